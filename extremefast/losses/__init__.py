"""The point loss (Roth et al., eqs. 6-8) with interchangeable backends."""
from __future__ import annotations

import torch

from ..errors import BackendUnavailable, InputError
from .backends import available_backends

BACKENDS = ("auto", "reference", "separable", "triton", "cuda")


def point_loss(prediction: torch.Tensor, point_channel: torch.Tensor, *, num_filters: int = 25, kernel_size: int = 3,
               backend: str = "auto", validate: bool = True) -> torch.Tensor:
    """L_points = -mean(exp(-(G0(P) - 0.5)^2) * G({e})).

    Parameters
    ----------
    prediction : (N, C, L0, L1, L2) float tensor in [0, 1]
        The network's probabilities P.
    point_channel : tensor of the same shape
        The point channel G({e}) (Gaussians at the clicks).
    num_filters, kernel_size : int
        G0 is ``num_filters`` repeated constant n x n x n box filters (n = kernel_size,
        odd) with weights 1/n^3 and zero "same" padding (the paper: B = 25, n = 3).
    backend : {'auto', 'reference', 'separable', 'triton', 'cuda'}
        'reference' is the literal loop of conv3d calls; 'separable' the exact per-axis
        banded-matrix form (three matrix products); 'triton' and 'cuda' fused kernels
        (CUDA tensors; Triton also on the CPU under TRITON_INTERPRET=1). 'auto' picks the
        fastest measured for the tensor's device: 'separable' on the CPU and on an H100.
    validate : bool
        Check that the prediction lies in [0, 1] (a device-to-host read; training loops
        that have already checked their sigmoid can switch it off).

    Returns
    -------
    loss : 0-dim tensor, differentiable with respect to ``prediction``.

    Notes
    -----
    The boundary map exp(-(G0 - 0.5)^2) peaks where the smoothed prediction crosses 0.5,
    so the loss is lowest when the predicted boundary passes through the clicks.

    References
    ----------
    H. R. Roth et al., "Going to Extremes: Weakly Supervised Medical Image Segmentation",
    Mach. Learn. Knowl. Extr. 2021, eqs. 6-8.
    """
    _check(prediction, point_channel, num_filters, kernel_size, backend, validate)
    if backend == "auto":
        backend = _auto_backend(prediction)
    if backend == "reference":
        from .reference import point_loss_reference as fn
    elif backend == "separable":
        from .separable import point_loss_separable as fn
    elif backend == "triton":
        if "triton" not in available_backends():
            raise BackendUnavailable("backend 'triton' needs Triton (pip install 'extremefast[triton]')")
        import os

        if prediction.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise BackendUnavailable("backend 'triton' needs a CUDA tensor (or TRITON_INTERPRET=1 on the CPU)")
        from .triton_kernel import point_loss_triton as fn
    else:
        if prediction.device.type != "cuda":
            raise BackendUnavailable("backend 'cuda' needs a CUDA tensor")
        from .cuda import point_loss_cuda as fn
    return fn(prediction, point_channel, num_filters, kernel_size)


def _auto_backend(prediction) -> str:
    """The fastest backend measured for the tensor's device: the separable form on the CPU
    and, at 4 x 1 x 128^3 on an H100, on a GPU too (0.97 ms against 1.20 ms for the Triton
    kernels and 1.85 ms for the CUDA extension; benchmarks/bench_point_loss.py)."""
    return "separable"


def _check(prediction, point_channel, num_filters, kernel_size, backend, validate):
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
    for name, t in (("prediction", prediction), ("point_channel", point_channel)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise InputError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() != 5:
            raise InputError(f"{name} must be 5D (N, C, L0, L1, L2), got shape {tuple(t.shape)}")
    if prediction.shape != point_channel.shape:
        raise InputError(f"point_channel shape {tuple(point_channel.shape)} does not match prediction shape "
                         f"{tuple(prediction.shape)}")
    if prediction.device != point_channel.device:
        raise InputError(f"point_channel is on {point_channel.device}, prediction on {prediction.device}")
    if int(num_filters) < 1:
        raise InputError(f"num_filters must be >= 1, got {num_filters}")
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise InputError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if validate:
        lo, hi = torch.aminmax(prediction.detach())
        if not (float(lo) >= 0.0 and float(hi) <= 1.0):
            raise InputError(f"prediction must lie in [0, 1] (probabilities), found values in [{float(lo):.4g}, "
                             f"{float(hi):.4g}]")


__all__ = ["point_loss", "BACKENDS", "available_backends"]
