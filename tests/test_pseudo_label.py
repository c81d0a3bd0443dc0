"""extremefast.pseudo.pseudo_label: pseudo labels from six clicks, their seeds and intensity rules,
on phantoms and the shared scans."""
from __future__ import annotations

import numpy as np
import pytest

from extremefast.errors import InputError
from extremefast.metrics import dice
from extremefast.pseudo import extreme_points, get_preset, paste_back, pseudo_label_from_points

from pseudo_support import ellipsoid


def test_pseudo_label_on_phantom_is_good_but_not_perfect():
    from extremefast.data.synthetic import make_phantom

    image, labels, affine = make_phantom(11)
    mask = labels == 1
    pl = pseudo_label_from_points(image, np.diag(affine)[:3], extreme_points(mask), get_preset("default"))
    d = dice(pl.in_image_space(), mask)
    assert 0.6 < d < 0.97
    assert pl.probability.min() >= 0 and pl.probability.max() <= 1


def test_bad_images():
    mask = ellipsoid()
    pts = extreme_points(mask)
    img = np.random.default_rng(0).random(mask.shape).astype(np.float32)
    with pytest.raises(InputError, match="empty"):
        extreme_points(np.zeros((5, 5, 5)))
    nan_img = img.copy()
    nan_img[15, 14, 13] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pseudo_label_from_points(nan_img, (1, 1, 1), pts)
    with pytest.raises(InputError, match="spacing"):
        pseudo_label_from_points(img, (1, 0, 1), pts)
    # a constant image gives a finite, documented answer (plain diffusion)
    pl = pseudo_label_from_points(np.zeros_like(img), (1, 1, 1), pts, get_preset("paper").with_(crop_size=(32,) * 3))
    assert np.isfinite(pl.probability).all()


def test_pseudo_label_on_shared_ct_spleen_touching_border(shared_data):
    from extremefast.data import open_msd

    ds = open_msd(shared_data / "ct_abdomen")
    image, labels = ds.load_case(ds.cases[0])
    mask = labels.array == 1
    pts = extreme_points(mask)
    assert pts[:, 2].min() == 0 or pts[:, 2].max() == mask.shape[2] - 1  # on the border slice
    pl = pseudo_label_from_points(image.array, image.spacing, pts, get_preset("default"))
    assert dice(pl.in_image_space(), mask) > 0.5


def _bright_u(shape=(40, 40, 24)):
    """A bright U (bone above the window) in soft tissue, and its mask."""
    grid = np.indices(shape).astype(float)
    cy, cx = 8.0, 20.0
    r = np.hypot(grid[0] - cy, grid[1] - cx)
    mask = (r >= 12) & (r <= 16) & (grid[0] >= cy) & (np.abs(grid[2] - 12) <= 5)
    image = np.where(mask, 900.0, 40.0) + np.random.default_rng(3).normal(0, 15, shape)
    return image, mask


def test_organ_above_the_window_is_told_apart_by_intensity():
    image, mask = _bright_u()
    pts = extreme_points(mask)
    with_rule = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts, get_preset("default"))
    # against no intensity rule at all: the grown seeds' own rule (seed_intensity_k) also keeps
    # them on this synthetic bone, which the real mandibles need the window rule for
    without = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts,
                                       get_preset("default", beyond_window=0.0, seed_intensity_k=0.0))
    # the rule makes every voxel of the crop below 90% of the window a background seed
    assert np.all(with_rule.seeds[with_rule.image < 0.9] == 1)
    assert not np.any((with_rule.seeds == 2) & (with_rule.image < 0.9))
    lo, hi = np.ceil(with_rule.points.min(0)).astype(int), np.floor(with_rule.points.max(0)).astype(int) + 1
    inside = tuple(slice(a, b) for a, b in zip(lo, hi))
    assert np.all(with_rule.seeds[inside][with_rule.image[inside] >= 0.9] != 1)  # in the box intensity decides
    # (0.75 against 0.62 when written)
    assert dice(with_rule.in_image_space(), mask) > max(0.7, dice(without.in_image_space(), mask) + 0.08)


def test_rule_above_the_window_leaves_soft_tissue_and_dark_scribbles_alone():
    blob = ellipsoid()
    image = np.where(blob, 60.0, -40.0) + np.random.default_rng(1).normal(0, 10, blob.shape)
    pts = extreme_points(blob)
    for img in (image, np.where(blob, -900.0, 40.0)):  # soft tissue; an organ below the window (air)
        a = pseudo_label_from_points(img, (1.0, 1.0, 1.0), pts, get_preset("default"))
        b = pseudo_label_from_points(img, (1.0, 1.0, 1.0), pts, get_preset("default", beyond_window=0.0))
        assert np.array_equal(a.seeds, b.seeds) and np.array_equal(a.probability, b.probability)


def test_intensity_model_options_change_the_seeds_as_documented():
    image, mask = _bright_u()
    pts = extreme_points(mask)
    base = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts, get_preset("default", beyond_window=0.0))
    bg = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts,
                                  get_preset("default", beyond_window=0.0, background_intensity_k=4.0))
    assert np.all(bg.seeds[base.seeds == 1] == 1)  # only adds background seeds (and keeps the foreground)
    assert np.count_nonzero(bg.seeds == 1) > np.count_nonzero(base.seeds == 1)
    fg = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts,
                                  get_preset("default", beyond_window=0.0, scribble_intensity_k=2.0))
    assert np.count_nonzero(fg.seeds == 2) <= np.count_nonzero(base.seeds == 2)


def _default_against(shared, collection, names, label, base=None, **without):
    """Per shared case (``names``, or an int: the collection's first cases): Dice of the default
    pseudo label (with ``base`` changed, if given) and of that with ``without``."""
    from extremefast.data import open_msd

    ds = open_msd(shared / collection)
    for case in ds.cases[:names] if isinstance(names, int) else [c for c in ds.cases if c.name in names]:
        image, labels = ds.load_case(case)
        mask = labels.array == label
        pts = extreme_points(mask)
        yield case.name, *(dice(pseudo_label_from_points(image.array, image.spacing, pts,
                                                         get_preset("default", **{**(base or {}), **kw}))
                                .in_image_space(), mask) for kw in ({}, without))


def test_mandible_pseudo_labels_on_shared_head_and_neck(shared_data):
    # against neither intensity rule (the grown seeds' rule alone gives the first 8 mandibles 0.812, with
    # this one 0.830)
    for name, new, old in _default_against(shared_data, "ct_headneck", 3, 7, beyond_window=0.0, seed_intensity_k=0.0):
        assert new > old + 0.05 and new > 0.7, (name, new, old)


def test_inward_samples_lie_inside_the_organ_by_its_clicks():
    from extremefast.pseudo.pseudo_label import inward_samples

    crop = np.zeros((30, 30, 30), dtype=np.float32)
    crop[5:25, 8:20, 10:15] = 1.0  # 20 x 12 x 5 voxels: the last axis thinner than twice the depth
    pts = extreme_points(crop > 0)
    assert np.all(inward_samples(crop, pts, depth=4.0) == 1.0)
    assert inward_samples(crop, pts, depth=4.0).size == 6 * 27
    assert np.any(inward_samples(crop, pts, depth=0.0) == 0.0)  # at the clicks themselves: the edge


def _soft_u():
    """A noisy soft-tissue U in smooth fat: the cheapest path by gradient between the U's tips
    crosses the fat."""
    _, mask = _bright_u()
    rng = np.random.default_rng(5)
    image = np.where(mask, 60.0 + rng.normal(0, 30, mask.shape), -100.0 + rng.normal(0, 3, mask.shape))
    return image, mask


def test_paths_keep_to_the_organ_intensity():
    image, mask = _soft_u()
    pts = extreme_points(mask)
    runs = {}
    for weight in (0.0, 0.5):
        pl = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts,
                                      get_preset("default", path_intensity_weight=weight, seed_intensity_k=0.0))
        scribble = paste_back(pl.scribble.astype(np.float32), pl.box, order=0) > 0.5
        runs[weight] = (mask[scribble].mean(), dice(pl.in_image_space(), mask))
    # (when written: in the organ 0.46 -> 1.0 of the scribble, Dice 0.72 -> 0.89)
    assert runs[0.0][0] < 0.7 and runs[0.5][0] > 0.95, runs
    assert runs[0.5][1] > runs[0.0][1] + 0.1, runs


def test_plain_paths_join_only_where_the_intensity_fits():
    image, mask = _soft_u()
    pts = extreme_points(mask)
    only = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts, get_preset("default", plain_path_k=0.0))
    joined = pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts, get_preset("default", plain_path_k=3.0))
    assert np.all(joined.scribble[only.scribble])  # the organ paths stay
    added = joined.scribble & ~only.scribble
    assert added.any() and np.all(joined.image[added] > 0.2)  # fat (-100 HU, 0.15 of the window) never joins


def test_plain_path_runs_join_only_where_they_touch_the_organ_paths():
    # a box organ and, beyond fat, a blob of the organ's intensity; a hand-made first path runs
    # inside the organ from a click, and a second stretch of it lies in the blob
    from extremefast.pseudo.geodesic import geodesic_scribbles, gradient_cost
    from extremefast.pseudo.pseudo_label import _join_plain_runs, _organ_cost, _robust_centre, inward_samples

    rng = np.random.default_rng(3)
    crop = 0.15 + rng.normal(0, 0.005, (40, 40, 40))
    crop[8:24, 8:24, 8:24] = 0.5 + rng.normal(0, 0.03, (16, 16, 16))
    crop[30:36, 30:36, 14:20] = 0.5 + rng.normal(0, 0.03, (6, 6, 6))
    organ = np.zeros(crop.shape, dtype=bool)
    organ[8:24, 8:24, 8:24] = True
    pts = extreme_points(organ)
    plain = np.zeros(crop.shape, dtype=bool)
    plain[8:16, 15, 15] = True  # inside, from the click on axis 0's low side
    plain[31:35, 33, 16] = True  # in the blob
    config = get_preset("default")
    cost = gradient_cost(crop, np.ones(3))
    intensity = _robust_centre(inward_samples(crop, pts, config.path_intensity_depth))
    organ_cost, deviation = _organ_cost(crop, cost, intensity, config)
    alone = geodesic_scribbles(organ_cost, pts, np.ones(3))
    joined = _join_plain_runs(alone.copy(), plain, deviation, config)
    added = joined & ~alone
    assert np.all(joined[8:16, 15, 15]) and not added[30:36, 30:36, 14:20].any()
    assert np.all(organ[added])


def test_organ_paths_lift_fatty_and_wrapped_sarcomas(shared_data):
    # (when written: STS_007 0.235 -> 0.683, STS_013 0.218 -> 0.640). Measured with the background
    # radius inside the box, as then: with the walker deciding the box (now default) STS_013 is 0.68
    # without the organ paths and 0.76 with them
    for name, new, old in _default_against(shared_data, "ct_sarcoma", ("STS_007", "STS_013"), 1,
                                           base={"background_in_box": True}, path_intensity_weight=0.0):
        assert new > old + 0.2 and new > 0.6, (name, new, old)


def test_grown_seeds_keep_to_the_organ_intensity():
    # a slab 4 voxels thick between fat and brighter tissue: the scribble grown by 5 voxels
    # reaches both; with the rule only voxels of the slab's intensity stay seeds, the rest unknown
    from extremefast.pseudo.pseudo_label import random_walker_problem, rw_probability

    rng = np.random.default_rng(2)
    crop = np.where(np.arange(48)[None, None, :] < 22, 0.15, 0.75) + rng.normal(0, 0.01, (48, 48, 48))
    slab = np.zeros(crop.shape, dtype=bool)
    slab[8:40, 8:40, 22:26] = True
    crop[slab] = 0.45 + rng.normal(0, 0.01, int(slab.sum()))
    crop = crop.astype(np.float32)
    pts = extreme_points(slab)
    plain = random_walker_problem(crop, pts, (1.0, 1.0, 1.0), get_preset("default", seed_intensity_k=0.0))
    ruled = random_walker_problem(crop, pts, (1.0, 1.0, 1.0), get_preset("default", seed_intensity_k=3.0))
    assert np.array_equal(plain.scribble, ruled.scribble)
    assert np.mean(slab[plain.seeds == 2]) < 0.8  # the grown seeds spill out of the slab
    grown = ruled.seeds == 2
    assert np.all(grown[ruled.scribble]) and np.all(slab[grown & ~ruled.scribble])
    dropped = (plain.seeds == 2) & ~grown
    assert dropped.any() and np.all(ruled.seeds[dropped] == 0)  # left to the walker, not background
    assert np.array_equal(ruled.seeds == 1, plain.seeds == 1)
    probability = rw_probability(ruled.data, ruled.seeds, beta=4000.0)
    before = rw_probability(plain.data, plain.seeds, beta=4000.0)
    assert dice(probability > 0.5, slab) > dice(before > 0.5, slab) + 0.1


def test_grown_seeds_rule_lifts_the_ct_pancreas_and_the_lung_tumour(shared_data):
    # (when written: CT pancreas 0.642 -> 0.655, lung tumour 0.755 -> 0.846)
    for collection, organ, gain in (("ct_abdomen", 7, 0.008), ("ct_lung_tumour", 1, 0.05)):
        for name, new, old in _default_against(shared_data, collection, 1, organ, seed_intensity_k=0.0):
            assert new > old + gain, (name, new, old)


def test_grown_seeds_rule_leaves_organs_that_hold_air_alone():
    # a tube of soft tissue around an air lumen (a larynx): its inward samples are half air, so
    # one median and spread do not describe it and the rule must not drop the lumen's seeds
    from extremefast.pseudo.pseudo_label import _window_truncates, inward_samples, random_walker_problem

    rng = np.random.default_rng(4)
    z, y, x = np.mgrid[:48, :48, :48]
    r = np.hypot(y - 24, x - 24)
    tube = (r <= 10) & (z >= 6) & (z < 42)
    crop = np.where(tube, np.where(r <= 5, 0.0, 0.5), 0.3) + rng.normal(0, 0.01, tube.shape)
    crop = np.clip(crop, 0, 1).astype(np.float32)
    pts = extreme_points(tube)
    assert _window_truncates(inward_samples(crop, pts, 4.0))
    assert not _window_truncates(np.full(100, 0.5)) and _window_truncates(np.r_[np.full(80, 0.5), np.ones(20)])
    ruled = random_walker_problem(crop, pts, (1.0, 1.0, 1.0), get_preset("default", seed_intensity_k=3.0))
    plain = random_walker_problem(crop, pts, (1.0, 1.0, 1.0), get_preset("default", seed_intensity_k=0.0))
    assert np.array_equal(ruled.seeds, plain.seeds)


def test_inside_the_box_the_walker_decides_the_background():
    # an organ far larger than the background radius: the radius seeds its far parts as background,
    # unless the box's inside is left to the walker (background_in_box=False, the default)
    from extremefast.pseudo.pseudo_label import random_walker_problem, rw_probability

    rng = np.random.default_rng(6)
    z, y, x = np.mgrid[:48, :48, :48]
    organ = ((z - 24) / 18.0) ** 2 + ((y - 24) / 12.0) ** 2 + ((x - 24) / 12.0) ** 2 <= 1
    crop = (np.where(organ, 0.5, 0.2) + rng.normal(0, 0.01, organ.shape)).astype(np.float32)
    pts = extreme_points(organ)
    problems = {in_box: random_walker_problem(crop, pts, (1.0, 1.0, 1.0),
                                              get_preset("default", r_background=6.0, background_in_box=in_box))
                for in_box in (True, False)}
    lo, hi = pts.min(0), pts.max(0) + 1
    box = np.zeros(organ.shape, dtype=bool)
    box[tuple(slice(a - 1, b + 1) for a, b in zip(lo, hi))] = True
    assert np.any(organ & (problems[True].seeds == 1))  # the radius seeds the organ
    assert not np.any((problems[False].seeds == 1) & box)  # only outside the box
    dices = {k: dice(rw_probability(p.data, p.seeds, beta=4000.0) > 0.5, organ) for k, p in problems.items()}
    assert dices[False] > dices[True] + 0.1, dices


def test_walker_deciding_the_box_lifts_large_organs_and_tumours(shared_data):
    # (when written: ct_abdomen liver 0.520 -> 0.752, STS_017 +0.08)
    for collection, names, organ, gain in (("ct_abdomen", 1, 5, 0.1), ("ct_sarcoma", ("STS_017",), 1, 0.04)):
        for name, new, old in _default_against(shared_data, collection, names, organ, background_in_box=True):
            assert new > old + gain, (name, new, old)
