"""Random-walker refinement of a network's probability on its uncertainty band (step 4)."""
from __future__ import annotations

import numpy as np

from .pseudo_label import rw_probability
from .roi import crop_resample, paste_back, roi_box
from .seeds import uncertainty_seeds


def refine_probability(prob, image, points, spacing, *, pad_mm: float, crop_size: int, radius: float,
                       beta: float) -> np.ndarray:
    """``prob`` (original grid) regularised by the random walker: P >= 0.5 and P < 0.5,
    each eroded by a ball of ``radius`` crop voxels, are the seeds; the band between is
    solved on a ``crop_size``^3 crop of the normalised ``image`` around the clicks.

    Returns ``prob`` unchanged where the band leaves no foreground, background or
    unknown voxel to work with.
    """
    box = roi_box(points, spacing, image.shape, pad_mm, (crop_size,) * 3)
    p_crop = crop_resample(np.asarray(prob, dtype=np.float32), box, order=1)
    seeds = uncertainty_seeds(p_crop, radius)
    if not ((seeds == 0).any() and (seeds == 1).any() and (seeds == 2).any()):
        return prob
    crop = crop_resample(image, box, order=1)
    return paste_back(rw_probability(crop, seeds, beta), box, order=1)
