"""Crops and point channels on the device the model runs on (torch), for training.

The crop geometry is that of :mod:`extremefast.pseudo.roi`: crop voxel c along an axis
sits at original coordinate ``start - 0.5 + (c + 0.5) * zoom``; trilinear sampling with
border clamping matches ``crop_resample(order=1)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..pseudo.roi import Box


def sampling_grid(box: Box, device, dtype=torch.float32) -> torch.Tensor:
    """(1, S0, S1, S2, 3) grid for ``grid_sample`` with align_corners=True."""
    axes = []
    for a in range(3):
        c = torch.arange(box.size[a], device=device, dtype=torch.float64)
        x = box.start[a] - 0.5 + (c + 0.5) * (box.stop[a] - box.start[a]) / box.size[a]
        n = box.image_shape[a]
        axes.append((2.0 * x / max(n - 1, 1) - 1.0).to(dtype))
    g0, g1, g2 = torch.meshgrid(*axes, indexing="ij")
    # grid_sample's last dimension is (W, H, D) = (axis 2, axis 1, axis 0)
    return torch.stack([g2, g1, g0], dim=-1)[None]


def crop_volumes(volumes: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop and resample (C, X, Y, Z) volumes to (C, *box.size)."""
    grid = sampling_grid(box, volumes.device, volumes.dtype)
    return F.grid_sample(volumes[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def point_channel_torch(points_crop: torch.Tensor, size, sigma: float) -> torch.Tensor:
    """Gaussians (unit peak, sum clipped to 1) at (6, 3) crop-space points -> (S0, S1, S2)."""
    dev = points_crop.device
    out = torch.zeros(tuple(size), device=dev)
    grids = [torch.arange(n, device=dev, dtype=torch.float32) for n in size]
    for p in points_crop:
        g = [torch.exp(-0.5 * ((grids[a] - p[a]) / sigma) ** 2) for a in range(3)]
        out += g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return out.clamp_(max=1.0)


def jitter_points(points: np.ndarray, spacing, sigma_mm: float, rng: np.random.Generator, shape) -> np.ndarray:
    """Two-sided Gaussian click noise (mm) on every coordinate, kept inside the image."""
    noise = rng.normal(0.0, 1.0, points.shape) * (float(sigma_mm) / np.asarray(spacing, dtype=np.float64))
    return np.clip(np.rint(points + noise), 0, np.asarray(shape) - 1).astype(np.int64)
