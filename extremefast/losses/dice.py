"""Dice loss on probabilistic targets (paper eq. 5)."""
from __future__ import annotations

import torch

from ..errors import InputError


def dice_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-6, reduction: str = "mean") -> torch.Tensor:
    """1 - 2 sum(y y_hat) / (sum y^2 + sum y_hat^2), per sample, then averaged.

    Works unchanged on soft (pseudo-label) targets. ``eps`` keeps empty pairs finite
    (loss 0 when both are empty).
    """
    if prediction.shape != target.shape:
        raise InputError(f"target shape {tuple(target.shape)} does not match prediction shape {tuple(prediction.shape)}")
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    dims = tuple(range(1, prediction.dim()))
    inter = (prediction * target).sum(dims)
    denom = (prediction * prediction).sum(dims) + (target * target).sum(dims)
    loss = 1.0 - (2.0 * inter + eps) / (denom + eps)
    return loss.mean() if reduction == "mean" else loss
