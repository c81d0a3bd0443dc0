"""Random-walker seeds from scribbles, and the uncertainty band of a prediction.

Dilation by a ball of radius r is computed exactly as ``edt(~scribble) <= r``: the same
set as a ball structuring element, at the cost of one distance transform whatever r is
(compiled, :mod:`.edt`, on the CPU; cupyx's on a GPU).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..xp import module_of
from .edt import squared_distance_to_background

# the seed codes: the random walker solves the unknown voxels; labels 1 and 2 are its two seeds
UNKNOWN, BACKGROUND, FOREGROUND = 0, 1, 2


def scribble_seeds(scribble, r_foreground: float = 2.0, r_background: float = 30.0, spacing=None,
                   outside=None, background_from=None) -> np.ndarray:
    """Seed labels: ``FOREGROUND`` (the scribble dilated by ``r_foreground``), ``BACKGROUND``
    (farther than ``r_background`` from the scribble, or in ``outside``, but never within
    ``r_foreground`` of it), ``UNKNOWN`` elsewhere.

    Radii are in voxels, or in mm when ``spacing`` is given. CuPy input is processed on
    its GPU.

    Parameters
    ----------
    scribble : ndarray
        Boolean scribble mask.
    r_foreground, r_background : float
        Radii, voxels (mm with ``spacing``).
    spacing : sequence of float, optional
    outside : ndarray, optional
        Boolean mask of voxels that are background whatever their distance.
    background_from : ndarray, optional
        A larger boolean scribble (holding ``scribble``) from which the background's distances
        count instead: the foreground then grows from a part of a path only (the part of the
        organ's intensity), while the whole path keeps background seeds away. One more
        distance transform.

    Returns
    -------
    ndarray
        int32 seeds of the scribble's shape.
    """
    am = module_of(scribble)
    xp = am.xp
    scribble = xp.asarray(scribble, dtype=bool)
    if not bool(scribble.any()):
        raise InputError("scribble is empty: no foreground seeds")
    dist, power = _distance(am, ~scribble, spacing)
    if background_from is None:
        dist_bg = dist
    else:
        dist_bg, _ = _distance(am, ~xp.asarray(background_from, dtype=bool), spacing)
    seeds = xp.zeros(scribble.shape, dtype=np.int32)
    seeds[dist_bg > r_background ** power] = BACKGROUND
    if outside is not None:
        seeds[xp.asarray(outside, dtype=bool)] = BACKGROUND
    if background_from is not None:
        seeds[dist_bg <= r_foreground ** power] = UNKNOWN
    seeds[dist <= r_foreground ** power] = FOREGROUND
    return seeds


def uncertainty_seeds(probability, radius: float = 4.0, spacing=None, ridge_above: float | None = None) -> np.ndarray:
    """Seeds from a prediction (paper step 4): P >= 0.5 and P < 0.5 each eroded by a ball of
    ``radius``; the band between them is ``UNKNOWN``. CuPy input is processed on its GPU.

    Erosion leaves no seed in a part thinner than ``2 * radius`` (the mandible's rami at CPU
    crop sizes), and the random walk then wears that part away from round to round.
    ``ridge_above`` keeps a foreground seed along the middle of such parts: the voxels of
    P >= 0.5 on the ridge of their distance to P < 0.5 (no larger distance among their 26
    neighbours) where P >= ``ridge_above``.

    Parameters
    ----------
    probability : ndarray
        A prediction in [0, 1].
    radius : float
        Erosion radius, voxels (mm with ``spacing``).
    spacing : sequence of float, optional
    ridge_above : float, optional
        Probability from which a ridge voxel is a foreground seed; None: erosion alone, as
        the paper.

    Returns
    -------
    ndarray
        int32 seeds: ``FOREGROUND``, ``BACKGROUND``, and ``UNKNOWN`` in the band to solve.
    """
    if ridge_above is not None and not 0.5 <= ridge_above <= 1.0:
        raise InputError(f"ridge_above must lie in [0.5, 1] (a probability of the foreground) or be None, got {ridge_above}")
    am = module_of(probability)
    p = am.xp.asarray(probability)
    fg = p >= 0.5
    seeds = am.xp.zeros(p.shape, dtype=np.int32)
    # erosion by a ball == points farther than radius from the complement
    for region, value in ((fg, FOREGROUND), (~fg, BACKGROUND)):
        if bool(region.any()):
            dist, power = _distance(am, region, spacing)
            seeds[dist > radius ** power] = value
            if value == FOREGROUND and ridge_above is not None:
                ridge = region & (dist >= am.ndimage.maximum_filter(dist, size=3)) & (p >= ridge_above)
                seeds[ridge] = FOREGROUND
    return seeds


def _distance(am, mask, spacing):
    """(distance to the nearest False voxel, power): squared (power 2) from the compiled
    transform on the CPU, plain (power 1) from cupyx on a GPU; compare with radius**power."""
    if am.device == "cpu":
        return squared_distance_to_background(mask, spacing), 2
    return am.ndimage.distance_transform_edt(mask, sampling=spacing), 1
