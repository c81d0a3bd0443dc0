"""extremefast.pseudo.roi: the box around the clicks, the crop and its paste-back."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from extremefast.pseudo import crop_resample, paste_back, roi_box


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
