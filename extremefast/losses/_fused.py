"""The autograd wrapper shared by the fused point-loss backends (Triton, CUDA).

A fused backend computes the loss and its gradient in one call; the gradient is saved and
scaled by the incoming gradient in ``backward``, so nothing is recomputed.
"""
from __future__ import annotations

import torch


class FusedPointLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, forward_fn, prediction, point_channel, num_filters, kernel_size):
        loss, grad = forward_fn(prediction, point_channel, num_filters, kernel_size)
        ctx.save_for_backward(grad)
        ctx.in_dtype = prediction.dtype
        return loss.to(prediction.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return None, (grad * grad_output).to(ctx.in_dtype), None, None, None
