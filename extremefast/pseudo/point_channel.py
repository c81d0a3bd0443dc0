"""The point channel G({e}): 3D Gaussians at the clicked points, in crop space."""
from __future__ import annotations

import numpy as np

from ..xp import array_module


def point_channel(points_crop, size, sigma: float = 3.0, spacing=None, device: str = "cpu") -> np.ndarray:
    """Sum of unit-peak Gaussians at ``points_crop`` (continuous crop coordinates), clipped to 1.

    ``sigma`` is in crop voxels, or in mm when ``spacing`` (crop spacing) is given.
    Each Gaussian is separable, so the channel costs three 1D evaluations per point.
    ``device="cuda"`` builds it on the GPU (a CuPy array).

    Parameters
    ----------
    points_crop : array_like
        (6, 3) continuous coordinates in the crop.
    size : sequence of int
        The crop's shape.
    sigma : float
        Width of each Gaussian, in crop voxels (or mm with ``spacing``).
    spacing : sequence of float, optional
        The crop's voxel size in mm.
    device : {"cpu", "cuda"}

    Returns
    -------
    ndarray
        float32 channel of shape ``size`` in [0, 1] (CuPy on "cuda").
    """
    xp = array_module(device).xp
    size = tuple(int(s) for s in size)
    sig = np.full(3, float(sigma)) if spacing is None else float(sigma) / np.asarray(spacing, dtype=np.float64)
    out = xp.zeros(size, dtype=np.float32)
    grids = [xp.arange(n, dtype=np.float32) for n in size]
    for p in np.asarray(points_crop, dtype=np.float64):
        g = [xp.exp(-0.5 * ((grids[a] - p[a]) / sig[a]) ** 2).astype(np.float32) for a in range(3)]
        out += g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return xp.minimum(out, 1.0, out=out)
