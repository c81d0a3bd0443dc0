"""extremefast.pseudo.seeds: seeds from scribbles, and the uncertainty band of a prediction."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import ball

from extremefast.errors import InputError
from extremefast.metrics import dice
from extremefast.pseudo import extreme_points, scribble_seeds, uncertainty_seeds

from pseudo_support import ellipsoid


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
    p = ellipsoid((40, 40, 40), (12, 12, 12)).astype(np.float32)
    seeds = uncertainty_seeds(p, radius=4)
    fg, bg = seeds == 2, seeds == 1
    assert fg.any() and bg.any() and (seeds == 0).any()
    np.testing.assert_array_equal(fg, ndi.binary_erosion(p >= 0.5, ball(4)))
    np.testing.assert_array_equal(bg, ndi.binary_erosion(p < 0.5, ball(4), border_value=1))


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


@pytest.mark.parametrize("outside", [False, True])
def test_background_counts_from_the_whole_scribble_where_the_foreground_grows_from_part(rng, outside):
    """``background_from``: the foreground grows from part of a path, the background keeps away from
    all of it (within ``r_foreground`` of the path is never background, even ``outside``)."""
    whole = np.zeros((40, 36, 30), bool)
    whole[20, 4:32, 15] = True
    part = whole.copy()
    part[20, 12:24, 15] = False
    outside_mask = rng.random(whole.shape) < 0.3 if outside else None
    seeds = scribble_seeds(part, 2.0, 9.0, outside=outside_mask, background_from=whole)
    from_part = scribble_seeds(part, 2.0, 9.0, outside=outside_mask)
    from_whole = scribble_seeds(whole, 2.0, 9.0, outside=outside_mask)
    np.testing.assert_array_equal(seeds == 2, from_part == 2)
    np.testing.assert_array_equal(seeds == 1, (from_part == 1) & (from_whole == 1))
    gap = ndi.binary_dilation(whole, ball(2)) & ~ndi.binary_dilation(part, ball(2))
    assert gap.any() and np.all(seeds[gap] == 0)
    np.testing.assert_array_equal(scribble_seeds(whole, 2.0, 9.0, outside=outside_mask, background_from=whole),
                                  from_whole)
