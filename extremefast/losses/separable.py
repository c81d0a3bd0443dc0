"""The point loss through the exact separable form of the repeated box filter.

Along one axis of length L, a zero-padded box filter of width n (weights 1/n) is the
banded matrix T with T[i, j] = 1/n for |i - j| <= (n-1)/2, truncated at the borders
(that truncation *is* the zero padding). The 3D filter with weights 1/n^3 is the product
of the three 1D filters, and B repetitions are M = T^B per axis, a fixed banded matrix of
half-bandwidth B(n-1)/2. So G0(P) = M_0 x M_1 x M_2 applied to P: three small matrix
products, exact at the borders; their gradient uses the transposes (autograd).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=64)
def _box_operator_np(length: int, num_filters: int, kernel_size: int) -> np.ndarray:
    half = kernel_size // 2
    i = np.arange(length)
    t = (np.abs(i[:, None] - i[None, :]) <= half).astype(np.float64) / kernel_size
    return np.linalg.matrix_power(t, num_filters)


def box_operator(length: int, num_filters: int, kernel_size: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """M = T^num_filters (length x length), computed in float64 and cast. The tensor is
    cached per device and shared: callers must not modify it (on a GPU this saves a
    host-to-device copy, and the wait for it, on every call)."""
    return _box_operator(int(length), int(num_filters), int(kernel_size), dtype, torch.device(device))


@lru_cache(maxsize=256)
def _box_operator(length, num_filters, kernel_size, dtype, device):
    return torch.as_tensor(_box_operator_np(length, num_filters, kernel_size), dtype=dtype, device=device)


def boundary_filter_separable(prediction: torch.Tensor, num_filters: int = 25, kernel_size: int = 3,
                              transpose: bool = False) -> torch.Tensor:
    """G0(P) = M_0 x M_1 x M_2 applied to P (``transpose``: the transposes, its adjoint)."""
    n, c, l0, l1, l2 = prediction.shape
    dev, dt = prediction.device, prediction.dtype
    m0, m1, m2 = (box_operator(L, num_filters, kernel_size, dt, dev) for L in (l0, l1, l2))
    if transpose:
        m0, m1, m2 = m0.T, m1.T, m2.T
    x = torch.matmul(prediction, m2.T)                      # along axis 2 (last)
    x = torch.matmul(m1, x)                                 # along axis 1: (l1 x l1) @ (l1 x l2) per slab
    x = torch.matmul(m0, x.reshape(n * c, l0, l1 * l2))     # along axis 0
    return x.reshape(n, c, l0, l1, l2)


class _SeparablePointLoss(torch.autograd.Function):
    """The loss with its gradient written out, so the elementwise steps run in place on
    the filtered tensor: d = G0 - 0.5, b = exp(-d^2), L = -mean(b e); dL/dG0 =
    (2/N) e d b, and dL/dP applies the transposed operators to it."""

    @staticmethod
    def forward(ctx, prediction, point_channel, num_filters, kernel_size):
        # (under autocast the products may come back in lower precision: the rest runs in the input's)
        d = boundary_filter_separable(prediction, num_filters, kernel_size).to(prediction.dtype).sub_(0.5)
        b = torch.square(d).neg_().exp_()
        be = b if not ctx.needs_input_grad[1] else b.clone()
        be.mul_(point_channel)
        loss = -be.mean()
        ctx.num_filters, ctx.kernel_size = num_filters, kernel_size
        ctx.save_for_backward(d.mul_(be), b if ctx.needs_input_grad[1] else None)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        seed, b = ctx.saved_tensors
        grad_p = grad_e = None
        if ctx.needs_input_grad[0]:
            grad_p = boundary_filter_separable(seed * (grad_output * (2.0 / seed.numel())), ctx.num_filters,
                                               ctx.kernel_size, transpose=True)
        if ctx.needs_input_grad[1]:
            grad_e = b * (-grad_output / b.numel())
        return grad_p, grad_e, None, None


def point_loss_separable(prediction, point_channel, num_filters: int = 25, kernel_size: int = 3) -> torch.Tensor:
    return _SeparablePointLoss.apply(prediction, point_channel, int(num_filters), int(kernel_size))
