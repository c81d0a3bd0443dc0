"""The point loss as Triton kernels, forward and backward.

Layout: the prediction (N, C, L0, L1, L2) is contiguous. Applying the per-axis operator
M (L x L) along an axis is a matrix product on a strided view:
- last axis: rows (R = N C L0 L1, L2) times M^T  -> ``_rows_times_mt``;
- axis 1 or 0: slabs (A, L, B) with M applied on the middle index -> ``_m_times_slab``.
The last forward pass (axis 0) is fused with the loss: it forms G0, the boundary map
exp(-(G0 - 0.5)^2), one partial sum of the loss per program (summed afterwards, so the
result is deterministic) and the gradient seed dL/dG0; the backward applies M^T along
the three axes to that seed. float32 products use the split-TF32 form (``tf32x3``: three
tensor-core products of the high and low parts, about float32's accuracy), not plain tf32,
so the kernels agree with the reference to about float32 rounding (tested); float64 ones
are exact (``ieee``). The kernels compute in the prediction's precision: float32, or
float64 for a float64 prediction (used for the gradient check against finite differences).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._fused import FusedPointLoss
from .separable import box_operator


@triton.jit
def _rows_times_mt(x_ptr, m_ptr, y_ptr, R, L, BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_K: tl.constexpr,
                   PRECISION: tl.constexpr):
    """y[r, i] = sum_k x[r, k] * m[i, k]  (x, y: R x L row-major; m: L x L)."""
    pid_r = tl.program_id(0)
    pid_i = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    acc = tl.zeros((BLOCK_R, BLOCK_I), dtype=y_ptr.dtype.element_ty)
    for k0 in range(0, L, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rows[:, None] * L + ks[None, :], mask=(rows[:, None] < R) & (ks[None, :] < L), other=0.0)
        mt = tl.load(m_ptr + cols[None, :] * L + ks[:, None], mask=(cols[None, :] < L) & (ks[:, None] < L), other=0.0)
        acc = tl.dot(x, mt, acc, input_precision=PRECISION)
    tl.store(y_ptr + rows[:, None] * L + cols[None, :], acc, mask=(rows[:, None] < R) & (cols[None, :] < L))


@triton.jit
def _slab_tile(x_ptr, m_ptr, L, B, BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
               PRECISION: tl.constexpr):
    """This program's tile of M x on the middle index of an (A, L, B) slab: returns
    acc[i, b] = sum_k m[i, k] * x[base + k * B + b] with its ``base``, ``ii`` and ``bb``
    (program ids: slab a, row block i, column block b)."""
    base = tl.program_id(0).to(tl.int64) * L * B
    ii = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    bb = tl.program_id(2) * BLOCK_B + tl.arange(0, BLOCK_B)
    acc = tl.zeros((BLOCK_I, BLOCK_B), dtype=x_ptr.dtype.element_ty)
    for k0 in range(0, L, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        m = tl.load(m_ptr + ii[:, None] * L + ks[None, :], mask=(ii[:, None] < L) & (ks[None, :] < L), other=0.0)
        x = tl.load(x_ptr + base + ks[:, None] * B + bb[None, :], mask=(ks[:, None] < L) & (bb[None, :] < B), other=0.0)
        acc = tl.dot(m, x, acc, input_precision=PRECISION)
    return acc, base, ii, bb


@triton.jit
def _m_times_slab(x_ptr, m_ptr, y_ptr, L, B, BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
                  PRECISION: tl.constexpr):
    """y[a, i, b] = sum_k m[i, k] * x[a, k, b]  (x, y: A x L x B contiguous)."""
    acc, base, ii, bb = _slab_tile(x_ptr, m_ptr, L, B, BLOCK_I, BLOCK_B, BLOCK_K, PRECISION)
    tl.store(y_ptr + base + ii[:, None] * B + bb[None, :], acc, mask=(ii[:, None] < L) & (bb[None, :] < B))


@triton.jit
def _m_times_slab_loss(x_ptr, m_ptr, g_ptr, seed_ptr, partial_ptr, L, B, inv_count,
                       BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """Last forward pass fused with the loss: G0 = M x on the middle index, then
    partial[pid] = sum exp(-(G0-.5)^2) * g and seed = 2/N * g * (G0 - .5) * exp(-(G0-.5)^2)."""
    acc, base, ii, bb = _slab_tile(x_ptr, m_ptr, L, B, BLOCK_I, BLOCK_B, BLOCK_K, PRECISION)
    inside = (ii[:, None] < L) & (bb[None, :] < B)
    offs = base + ii[:, None] * B + bb[None, :]
    g = tl.load(g_ptr + offs, mask=inside, other=0.0)
    d = acc - 0.5
    boundary = tl.exp(-d * d)
    prod = tl.where(inside, boundary * g, 0.0)
    pid = (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(2) + tl.program_id(2)
    tl.store(partial_ptr + pid, tl.sum(tl.sum(prod, axis=1), axis=0))
    tl.store(seed_ptr + offs, 2.0 * inv_count * g * d * boundary, mask=inside)


def _precision(x) -> str:
    return "tf32x3" if x.dtype == torch.float32 else "ieee"


def _block(length: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(length)))


def _apply_last(x, m):
    """Apply m along the last axis of a contiguous (..., L) tensor."""
    L = x.shape[-1]
    R = x.numel() // L
    y = torch.empty_like(x)
    br, bi, bk = 32, _block(L, 64), _block(L, 32)
    grid = (triton.cdiv(R, br), triton.cdiv(L, bi))
    _rows_times_mt[grid](x, m, y, R, L, BLOCK_R=br, BLOCK_I=bi, BLOCK_K=bk, PRECISION=_precision(x))
    return y


def _apply_middle(x, m, A, L, B):
    y = torch.empty_like(x)
    bi, bb, bk = _block(L, 64), _block(B, 64), _block(L, 32)
    grid = (A, triton.cdiv(L, bi), triton.cdiv(B, bb))
    _m_times_slab[grid](x, m, y, L, B, BLOCK_I=bi, BLOCK_B=bb, BLOCK_K=bk, PRECISION=_precision(x))
    return y


def point_loss_triton_forward(prediction, point_channel, num_filters, kernel_size):
    """Returns (loss, dL/dprediction); both computed in one call (the backward is cheap
    once the seed exists, and saving the seed avoids recomputing the forward)."""
    dtype = torch.float64 if prediction.dtype == torch.float64 else torch.float32
    pred = prediction.contiguous().to(dtype)
    g = point_channel.contiguous().to(dtype)
    n, c, l0, l1, l2 = pred.shape
    dev = pred.device
    ms = [box_operator(L, num_filters, kernel_size, dtype, dev).contiguous() for L in (l0, l1, l2)]
    x = _apply_last(pred, ms[2])
    x = _apply_middle(x, ms[1], n * c * l0, l1, l2)
    # fused last pass
    seed = torch.empty_like(x)
    bi, bb, bk = _block(l0, 64), _block(l1 * l2, 64), _block(l0, 32)
    grid = (n * c, triton.cdiv(l0, bi), triton.cdiv(l1 * l2, bb))
    partial = torch.empty(grid[0] * grid[1] * grid[2], dtype=dtype, device=dev)
    _m_times_slab_loss[grid](x, ms[0], g, seed, partial, l0, l1 * l2, 1.0 / pred.numel(),
                             BLOCK_I=bi, BLOCK_B=bb, BLOCK_K=bk, PRECISION=_precision(x))
    loss = -partial.sum() / pred.numel()
    # backward: M^T along each axis
    mts = [m.T.contiguous() for m in ms]
    y = _apply_middle(seed, mts[0], n * c, l0, l1 * l2)
    y = _apply_middle(y, mts[1], n * c * l0, l1, l2)
    grad = _apply_last(y, mts[2])
    return loss, grad


def point_loss_triton(prediction, point_channel, num_filters: int = 25, kernel_size: int = 3):
    return FusedPointLoss.apply(point_loss_triton_forward, prediction, point_channel, num_filters, kernel_size)
