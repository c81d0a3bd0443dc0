"""extremefast.pseudo.refine: the refresh of a prediction by the random walker, batched and on the GPU."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from extremefast.pseudo import (crop_resample, extreme_points, gradient_cost, paste_back, point_channel, roi_box,
                                scribble_seeds, uncertainty_seeds)


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
