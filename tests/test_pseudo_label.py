"""Steps 1-2: extreme points, clicks, crop and paste-back, scribbles, seeds, pseudo labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import ball

from extremefast.errors import InputError
from extremefast.metrics import dice
from extremefast.pseudo import (check_points, crop_resample, extreme_points, geodesic_scribbles, get_preset,
                                gradient_cost, paste_back, point_channel, pseudo_label_from_points, roi_box,
                                scribble_seeds, shortest_path, simulate_clicks, uncertainty_seeds)
from extremefast.pseudo.geodesic_ref import shortest_path_ref


def _blob(shape=(30, 28, 26), radii=(9, 7, 6)):
    grid = np.indices(shape).astype(float)
    c = np.array(shape)[:, None, None, None] / 2
    r = np.array(radii)[:, None, None, None]
    return (((grid - c) / r) ** 2).sum(0) <= 1


def test_extreme_points_lie_on_the_extremes():
    mask = _blob()
    pts = extreme_points(mask)
    coords = np.argwhere(mask)
    for a in range(3):
        assert pts[2 * a, a] == coords[:, a].min() and pts[2 * a + 1, a] == coords[:, a].max()
        assert mask[tuple(pts[2 * a])] and mask[tuple(pts[2 * a + 1])]


def test_simulated_clicks_are_two_sided_inside_and_seeded():
    mask = _blob((60, 60, 60), (25, 22, 20))
    pts = extreme_points(mask)
    offsets = []
    for s in range(200):
        clicks = simulate_clicks(pts, mask, (1.0, 1.0, 1.0), sigma_mm=2.0, rng=s)
        assert all(mask[tuple(p)] for p in clicks)
        offsets.append(clicks - pts)
    offsets = np.concatenate(offsets)
    # noise goes both ways along every axis (not only positive)
    for a in range(3):
        assert (offsets[:, a] < 0).any() and (offsets[:, a] > 0).any()
    np.testing.assert_array_equal(simulate_clicks(pts, mask, (1, 1, 1), 2.0, rng=7),
                                  simulate_clicks(pts, mask, (1, 1, 1), 2.0, rng=7))


def test_crop_and_paste_back_are_inverse(rng):
    shape = (50, 44, 20)
    vol = ndi.gaussian_filter(rng.random(shape), 3).astype(np.float32)
    pts = np.array([[10, 20, 5], [40, 22, 8], [25, 8, 10], [26, 36, 9], [24, 21, 2], [25, 22, 17]])
    box = roi_box(pts, (0.8, 0.8, 2.5), shape, pad_mm=4, size=(64, 64, 64))
    crop = crop_resample(vol, box)
    back = paste_back(crop, box)
    inside = tuple(slice(a + 1, b - 1) for a, b in zip(box.start, box.stop))
    np.testing.assert_allclose(back[inside], vol[inside], atol=0.02)
    assert (back[: box.start[0]] == 0).all()
    # point coordinates map exactly both ways
    np.testing.assert_allclose(box.to_image(box.to_crop(pts)), pts, atol=1e-9)


def test_box_is_padded_in_mm_and_clipped():
    pts = np.array([[10, 10, 5], [20, 12, 6], [15, 5, 5], [15, 18, 6], [15, 12, 1], [15, 12, 9]])
    box = roi_box(pts, (1.0, 2.0, 5.0), (100, 100, 10), pad_mm=10, size=32)
    assert box.start == (0, 0, 0) and box.stop == (31, 24, 10)


def test_point_channel_peaks_at_points():
    pts = np.array([[5.0, 6.0, 7.0], [20.0, 10.0, 3.0]])
    pc = point_channel(pts, (24, 16, 12), sigma=2.0)
    assert pc.max() <= 1.0 and pc[5, 6, 7] == pytest.approx(1.0, abs=1e-3)
    assert pc[0, 15, 11] < 1e-3


@pytest.mark.parametrize("shape", [(6, 7, 8), (12, 9, 10), (1, 12, 9), (15, 2, 11)])
@pytest.mark.parametrize("plateau", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_geodesic_paths_match_csgraph_reference(rng, shape, plateau, bidirectional):
    cost = rng.random(shape) + 0.01
    if plateau:
        cost[:, : shape[1] // 2] = 0.0  # zero-cost plateau
    src, dst = (0, 0, 0), tuple(s - 1 for s in shape)  # corners: points on the image border
    path, total = shortest_path(cost, src, dst, (1.0, 1.5, 2.0), bidirectional=bidirectional)
    _, ref_total = shortest_path_ref(cost, src, dst, (1.0, 1.5, 2.0))
    assert total == pytest.approx(ref_total, rel=1e-12, abs=1e-12)
    assert tuple(path[0]) == src and tuple(path[-1]) == dst
    steps = np.abs(np.diff(path, axis=0))
    assert steps.max() <= 1 and (steps.sum(axis=1) > 0).all()
    # the path's own cost equals the reported optimum
    lengths = np.sqrt(((np.diff(path, axis=0) * [1.0, 1.5, 2.0]) ** 2).sum(1))
    own = (lengths * 0.5 * (cost[tuple(path[:-1].T)] + cost[tuple(path[1:].T)])).sum()
    assert own == pytest.approx(ref_total, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_geodesic_paths_exact_on_costs_spanning_twelve_decades(rng, bidirectional):
    """Heap keys are truncated distances: near-equal keys may pop out of order, and the
    search must still return the exact optimum (a node improved late is expanded again)."""
    cost = 10.0 ** rng.uniform(-12, 0, size=(14, 13, 12))
    cost[3:9, 2:10, 4:8] = 0.0
    for _ in range(15):
        src, dst = (tuple(int(rng.integers(0, s)) for s in cost.shape) for _ in range(2))
        path, total = shortest_path(cost, src, dst, (0.7, 1.0, 2.5), bidirectional=bidirectional)
        _, ref_total = shortest_path_ref(cost, src, dst, (0.7, 1.0, 2.5))
        assert total == pytest.approx(ref_total, rel=1e-12, abs=1e-300)
        assert tuple(path[0]) == src and tuple(path[-1]) == dst


def test_scribbles_connect_each_pair():
    cost = np.ones((20, 21, 22))
    pts = np.array([[0, 10, 11], [19, 10, 11], [10, 0, 11], [10, 20, 11], [10, 10, 0], [10, 10, 21]])
    s = geodesic_scribbles(cost, pts)
    assert all(s[tuple(p)] for p in pts)
    assert ndi.label(s, structure=np.ones((3, 3, 3)))[1] == 1


@pytest.mark.parametrize("r", [2, 5, 30])
def test_seed_dilation_equals_ball_structuring_element(r):
    scribble = np.zeros((70, 70, 70), bool)
    scribble[35, 10:60, 35] = True
    seeds = scribble_seeds(scribble, r_foreground=2, r_background=r)
    fg_ref = ndi.binary_dilation(scribble, ball(2))
    np.testing.assert_array_equal(seeds == 2, fg_ref)
    if r <= 5:  # a ball of 30 is the expensive case the distance transform avoids
        bg_ref = ~ndi.binary_dilation(scribble, ball(r))
        np.testing.assert_array_equal((seeds == 1) | (seeds == 2) & bg_ref, bg_ref)


def test_uncertainty_band():
    p = _blob((40, 40, 40), (12, 12, 12)).astype(np.float32)
    seeds = uncertainty_seeds(p, radius=4)
    fg, bg = seeds == 2, seeds == 1
    assert fg.any() and bg.any() and (seeds == 0).any()
    np.testing.assert_array_equal(fg, ndi.binary_erosion(p >= 0.5, ball(4)))
    np.testing.assert_array_equal(bg, ndi.binary_erosion(p < 0.5, ball(4), border_value=1))


def test_pseudo_label_on_phantom_is_good_but_not_perfect():
    from extremefast.data.synthetic import make_phantom

    image, labels, affine = make_phantom(11)
    mask = labels == 1
    pl = pseudo_label_from_points(image, np.diag(affine)[:3], extreme_points(mask), get_preset("default"))
    d = dice(pl.in_image_space(), mask)
    assert 0.6 < d < 0.97
    assert pl.probability.min() >= 0 and pl.probability.max() <= 1


@pytest.mark.parametrize("bad,match", [
    (lambda p: p[:5], "six"),
    (lambda p: np.vstack([p[:5], [[999, 0, 0]]]), "outside"),
    (lambda p: np.vstack([p[:1], p[:1], p[2:]]), "same voxel"),
    (lambda p: np.where(np.arange(18).reshape(6, 3) == 4, np.nan, p), "NaN"),
])
def test_bad_points(bad, match):
    pts = extreme_points(_blob())
    with pytest.raises(InputError, match=match):
        check_points(bad(pts.astype(float)), (30, 28, 26))


def test_bad_images():
    mask = _blob()
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


def test_pseudo_label_cli_resumes_and_reports(small_synthetic, tmp_path, cli):
    out = tmp_path / "pl"
    code, stdout, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", out,
                            "--crop-size", 48, "--workers", 1)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cases"]) == 3 and 0 < summary["dice"]["mean"] <= 1
    assert set(summary["dice"]) >= {"mean", "std", "median"}
    for c in summary["cases"]:
        assert (out / f"{c['case']}.nii.gz").exists() and (out / f"{c['case']}.png").exists()
    assert "mean±std" in stdout
    # a rerun after losing one case redoes only that case, with the same answer
    first = (out / f"{summary['cases'][0]['case']}.nii.gz").read_bytes()
    (out / f"{summary['cases'][0]['case']}.json").unlink()
    mtime = (out / f"{summary['cases'][1]['case']}.json").stat().st_mtime_ns
    code, _, _ = cli("pseudo-label", "--data", small_synthetic, "--label", 1, "--out", out, "--crop-size", 48,
                     "--workers", 1)
    assert code == 0
    assert (out / f"{summary['cases'][1]['case']}.json").stat().st_mtime_ns == mtime
    again = json.loads((out / "summary.json").read_text())
    assert again["cases"][0]["dice"] == pytest.approx(summary["cases"][0]["dice"])
    import nibabel as nib

    a = nib.load(str(out / f"{summary['cases'][0]['case']}.nii.gz"))
    assert a.shape == nib.load(str(small_synthetic / "imagesTr" / f"{summary['cases'][0]['case']}.nii.gz")).shape
    assert len(first) > 0


def test_pseudo_label_cli_bad_label(small_synthetic, tmp_path, cli):
    code, _, err = cli("pseudo-label", "--data", small_synthetic, "--label", 42, "--out", tmp_path / "x")
    assert code == 1 and "label 42" in err and len(err.strip().splitlines()) == 1


def test_pseudo_label_on_shared_ct_spleen_touching_border(shared_data):
    from extremefast.data import open_msd

    ds = open_msd(shared_data / "ct_abdomen")
    image, labels = ds.load_case(ds.cases[0])
    mask = labels.array == 1
    pts = extreme_points(mask)
    assert pts[:, 2].min() == 0 or pts[:, 2].max() == mask.shape[2] - 1  # on the border slice
    pl = pseudo_label_from_points(image.array, image.spacing, pts, get_preset("default"))
    assert dice(pl.in_image_space(), mask) > 0.5


@pytest.mark.parametrize("size", [(16, 12, 20), (33, 7, 9)])
def test_device_crop_matches_numpy_crop(rng, size):
    """The training crops (torch grid_sample on the model's device) equal crop_resample."""
    import torch

    from extremefast.model.network import crop_volumes

    vol = rng.random((40, 33, 21)).astype(np.float32)
    box = roi_box(np.array([[5, 5, 3], [30, 20, 15]]), (1.0, 1.0, 2.0), vol.shape, 3, size)
    expected = crop_resample(vol, box, order=1)
    got = crop_volumes(torch.from_numpy(vol)[None], box)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_refinement_equals_its_steps_case_by_case():
    """The refresh (device crops, seeds, paste-back, one batched random walk; run on numpy
    here) gives what its steps give one case at a time."""
    from extremefast.data.synthetic import make_phantom
    from extremefast.pseudo.pseudo_label import normalise_intensity, rw_probability
    from extremefast.pseudo.refine import refine_probabilities

    items = []
    for seed, organ in ((0, 1), (1, 5), (2, 3)):
        image, labels, affine = make_phantom(seed)
        mask = labels == organ
        prob = ndi.gaussian_filter(np.roll(mask, 2, axis=0).astype(np.float32), 1.5)  # a network's blurred guess
        items.append((prob, normalise_intensity(image, (-160, 240)), extreme_points(mask), np.diag(affine)[:3]))
    items.append((np.zeros_like(items[0][0]),) + items[0][1:])  # no band: returned as it is
    kw = dict(pad_mm=20.0, crop_size=48, radius=3.0, beta=500.0)
    batched = refine_probabilities(items, device="cpu", **kw)
    for out, (prob, image, pts, spacing) in zip(batched[:-1], items):
        box = roi_box(pts, spacing, image.shape, kw["pad_mm"], (kw["crop_size"],) * 3)
        seeds = uncertainty_seeds(crop_resample(prob, box), kw["radius"])
        ref = paste_back(rw_probability(crop_resample(image, box), seeds, kw["beta"]), box)
        np.testing.assert_allclose(out, ref, atol=1e-6)
    assert batched[-1] is items[-1][0]
    assert not np.allclose(batched[0], items[0][0], atol=0.05)  # the band was actually refined


@pytest.mark.gpu
def test_refresh_steps_on_cupy_equal_numpy(rng):
    """Crop/paste-back, seeds, gradient cost and point channel on the GPU (CuPy) against the
    same functions on numpy; then the batched refinement against the per-case one."""
    cupy = pytest.importorskip("cupy")
    from extremefast.pseudo.refine import refine_probabilities
    from extremefast.pseudo.roi import Box

    vol = rng.random((40, 36, 30)).astype(np.float32)
    box = Box((3, 5, 2), (35, 30, 27), vol.shape, (24, 20, 16))
    crop = crop_resample(vol, box)
    np.testing.assert_allclose(crop_resample(cupy.asarray(vol), box).get(), crop, atol=1e-5)
    np.testing.assert_allclose(paste_back(cupy.asarray(crop), box).get(), paste_back(crop, box), atol=1e-5)
    prob = ndi.gaussian_filter(vol, 3)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    np.testing.assert_array_equal(uncertainty_seeds(cupy.asarray(prob), 2.0).get(), uncertainty_seeds(prob, 2.0))
    np.testing.assert_array_equal(uncertainty_seeds(cupy.asarray(prob), 2.0, ridge_above=0.6).get(),
                                  uncertainty_seeds(prob, 2.0, ridge_above=0.6))
    scribble = np.zeros(vol.shape, bool)
    scribble[20, 5:30, 15] = True
    np.testing.assert_array_equal(scribble_seeds(cupy.asarray(scribble), 2, 9).get(), scribble_seeds(scribble, 2, 9))
    np.testing.assert_allclose(gradient_cost(cupy.asarray(vol), (1.0, 1.5, 2.0)).get(),
                               gradient_cost(vol, (1.0, 1.5, 2.0)), rtol=1e-5)
    pts = np.array([[5.3, 6.1, 7.7], [20.0, 10.2, 3.0]])
    np.testing.assert_allclose(point_channel(pts, (24, 16, 12), 2.0, device="cuda").get(),
                               point_channel(pts, (24, 16, 12), 2.0), atol=1e-6)
    from extremefast.data.synthetic import make_phantom
    from extremefast.pseudo.pseudo_label import normalise_intensity

    items = []
    for seed, organ in ((0, 1), (1, 5)):
        image, labels, affine = make_phantom(seed)
        mask = labels == organ
        p = ndi.gaussian_filter(np.roll(mask, 2, axis=0).astype(np.float32), 1.5)
        items.append((p, normalise_intensity(image, (-160, 240)), extreme_points(mask), np.diag(affine)[:3]))
    kw = dict(pad_mm=20.0, crop_size=48, radius=3.0, beta=500.0)
    gpu_all = refine_probabilities(items, device="cuda", **kw)
    for gpu, cpu in zip(gpu_all, refine_probabilities(items, device="cpu", **kw)):
        assert np.abs(gpu - cpu).max() < 0.02


@pytest.mark.parametrize("shape,sampling,fraction", [((7, 9, 11), None, 0.9), ((20, 1, 13), (1.0, 2.0, 0.5), 0.95),
                                                     ((30, 25, 20), (0.78, 0.78, 5.0), 0.99), ((17, 23), None, 0.97),
                                                     ((40,), (0.3,), 0.8), ((3, 4, 5), None, 0.0)])
def test_compiled_distance_transform_equals_scipy(rng, shape, sampling, fraction):
    from extremefast.pseudo.edt import squared_distance_to_background

    mask = rng.random(shape) < fraction
    mask.flat[0] = False  # at least one background voxel
    ref = ndi.distance_transform_edt(mask, sampling=sampling) ** 2
    np.testing.assert_allclose(squared_distance_to_background(mask, sampling), ref, rtol=1e-12, atol=1e-12)
    assert np.isinf(squared_distance_to_background(np.ones(shape, bool), sampling)).all()


def test_uncertainty_seeds_equal_ball_erosions(rng):
    prob = ndi.gaussian_filter(rng.random((40, 36, 30)), 3)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    seeds = uncertainty_seeds(prob, 4.0)
    fg = prob >= 0.5
    np.testing.assert_array_equal(seeds == 2, ndi.binary_erosion(fg, ball(4), border_value=1))
    np.testing.assert_array_equal(seeds == 1, ndi.binary_erosion(~fg, ball(4), border_value=1))


def _jaw(shape=(48, 48, 24)):
    """A thick chin with two arms 4 voxels thick (the mandible's rami at CPU crop sizes)."""
    g = np.indices(shape).astype(float)
    r = np.hypot(g[0] - 8.0, g[1] - 24.0)
    arms = (r >= 14) & (r <= 17) & (g[0] >= 8.0) & (np.abs(g[2] - 12) <= 4)
    chin = np.hypot(np.hypot(g[0] - 23.5, g[1] - 24.0), g[2] - 12) <= 7
    return arms & (np.abs(g[1] - 24.0) > 9), arms | chin


def test_ridge_seeds_keep_thin_parts_that_erosion_leaves_without_seeds():
    from extremefast.pseudo.pseudo_label import normalise_intensity
    from extremefast.pseudo.refine import refine_probability

    far_arms, mask = _jaw()
    prob = ndi.gaussian_filter(mask.astype(np.float32), 1.0)
    eroded = uncertainty_seeds(prob, 4.0)
    ridged = uncertainty_seeds(prob, 4.0, ridge_above=0.8)
    assert not np.any((eroded == 2) & far_arms)  # erosion leaves the arms no seed
    assert np.all(ridged[eroded == 2] == 2) and np.array_equal(ridged == 1, eroded == 1)
    added = (ridged == 2) & (eroded != 2)
    assert np.any(added & far_arms) and np.all(prob[added] >= 0.8) and np.all(mask[added])
    image = np.where(mask, 100.0, 40.0) + np.random.default_rng(3).normal(0, 20, mask.shape)
    kw = dict(pad_mm=4.0, crop_size=48, radius=4.0, beta=500.0, device="cpu")
    args = (prob, normalise_intensity(image, (-160, 240)), extreme_points(mask), (1.0, 1.0, 1.0))
    worn = dice(refine_probability(*args, **kw), mask)
    kept = dice(refine_probability(*args, ridge_above=0.8, **kw), mask)
    assert kept > max(0.9, worn + 0.15)  # (0.964 against 0.739 when written)
    with pytest.raises(InputError, match="ridge_above"):
        uncertainty_seeds(prob, 4.0, ridge_above=0.3)


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
    blob = _blob()
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
    from extremefast.pseudo.geodesic import gradient_cost
    from extremefast.pseudo.pseudo_label import _organ_paths, _robust_centre, inward_samples

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
    alone = _organ_paths(crop, cost, np.zeros_like(plain), pts, np.ones(3), intensity, config)
    joined = _organ_paths(crop, cost, plain, pts, np.ones(3), intensity, config)
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
