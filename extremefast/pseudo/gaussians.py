"""The point channel G({e}): 3D Gaussians at the clicked points, in crop space."""
from __future__ import annotations

import numpy as np

from ..xp import array_module


def point_channel(points_crop, size, sigma: float = 3.0, spacing=None, device: str = "cpu") -> np.ndarray:
    """Sum of unit-peak Gaussians at ``points_crop`` (continuous crop coordinates), clipped to 1.

    ``sigma`` is in crop voxels, or in mm when ``spacing`` (crop spacing) is given.
    Each Gaussian is separable, so the channel costs three 1D evaluations per point.
    ``device="cuda"`` builds it on the GPU (a CuPy array). The network's input channel is
    the same formula on torch tensors (:func:`gaussian_points`).

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
    sigmas = [float(sigma)] * 3 if spacing is None else [float(sigma) / float(s) for s in spacing]
    points = xp.asarray(np.asarray(points_crop, dtype=np.float32))
    return gaussian_points(xp, points, size, sigmas, np.float32)


def gaussian_points(xp, points, size, sigmas, dtype):
    """The point channel's one formula, for any array namespace ``xp`` with ``zeros``,
    ``arange`` and ``exp`` (numpy, CuPy, or torch on a device).

    Parameters
    ----------
    xp : module or namespace
        The array functions; ``points`` must be its array.
    points : array
        (n, 3) float coordinates in the crop.
    size : sequence of int
    sigmas : sequence of float
        Width per axis, crop voxels.
    dtype : the namespace's float type

    Returns
    -------
    array
        Shape ``size``: unit-peak Gaussians summed and clipped to 1.
    """
    size = tuple(int(n) for n in size)
    out = xp.zeros(size, dtype=dtype)
    grids = [xp.arange(n, dtype=dtype) for n in size]
    for p in points:
        g = [xp.exp(-0.5 * ((grids[a] - p[a]) / sigmas[a]) ** 2) for a in range(3)]
        out += g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return out.clip(max=1.0)
