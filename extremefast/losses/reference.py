"""The point loss written literally (paper eqs. 6-8): ``num_filters`` 3D convolutions with a
constant n x n x n kernel of 1/n^3 and zero "same" padding, then the boundary map and the
mean product with the point channel. Slow; every fast backend is tested against it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_filter_reference(prediction: torch.Tensor, num_filters: int = 25, kernel_size: int = 3) -> torch.Tensor:
    """G0(P): the repeated box filter, one ``conv3d`` per repetition."""
    channels = prediction.shape[1]
    weight = torch.full((channels, 1, kernel_size, kernel_size, kernel_size), 1.0 / kernel_size**3,
                        dtype=prediction.dtype, device=prediction.device)
    out = prediction
    for _ in range(num_filters):
        out = F.conv3d(out, weight, padding=kernel_size // 2, groups=channels)
    return out


def point_loss_reference(prediction, point_channel, num_filters: int = 25, kernel_size: int = 3) -> torch.Tensor:
    g0 = boundary_filter_reference(prediction, num_filters, kernel_size)
    boundary = torch.exp(-((g0 - 0.5) ** 2))
    return -(boundary * point_channel).mean()
