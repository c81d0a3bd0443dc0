"""Random-walker seeds from scribbles, and the uncertainty band of a prediction.

Dilation by a ball of radius r is computed exactly as ``edt(~scribble) <= r``: the same
set as a ball structuring element, at the cost of one distance transform whatever r is.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..xp import module_of

UNKNOWN, BACKGROUND, FOREGROUND = 0, 1, 2


def scribble_seeds(scribble, r_foreground: float = 2.0, r_background: float = 30.0, spacing=None,
                   outside=None) -> np.ndarray:
    """Seed labels: 2 = foreground (scribble dilated by ``r_foreground``), 1 = background
    (farther than ``r_background`` from the scribble, or in ``outside``), 0 = unknown.

    Radii are in voxels, or in mm when ``spacing`` is given. CuPy input is processed on
    its GPU.
    """
    am = module_of(scribble)
    xp = am.xp
    scribble = xp.asarray(scribble, dtype=bool)
    if not bool(scribble.any()):
        raise InputError("scribble is empty: no foreground seeds")
    dist = am.ndimage.distance_transform_edt(~scribble, sampling=spacing)
    seeds = xp.zeros(scribble.shape, dtype=np.int32)
    seeds[dist > r_background] = BACKGROUND
    if outside is not None:
        seeds[xp.asarray(outside, dtype=bool)] = BACKGROUND
    seeds[dist <= r_foreground] = FOREGROUND
    return seeds


def uncertainty_seeds(probability, radius: float = 4.0, spacing=None) -> np.ndarray:
    """Seeds from a prediction (paper step 4): P >= 0.5 and P < 0.5 each eroded by a ball of
    ``radius``; the band between them is unknown (0). CuPy input is processed on its GPU."""
    am = module_of(probability)
    p = am.xp.asarray(probability)
    fg = p >= 0.5
    seeds = am.xp.zeros(p.shape, dtype=np.int32)
    # erosion by a ball == points farther than radius from the complement
    if bool(fg.any()):
        seeds[am.ndimage.distance_transform_edt(fg, sampling=spacing) > radius] = FOREGROUND
    if bool((~fg).any()):
        seeds[am.ndimage.distance_transform_edt(~fg, sampling=spacing) > radius] = BACKGROUND
    return seeds
