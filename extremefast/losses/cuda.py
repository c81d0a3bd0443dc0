"""The CUDA point-loss op from ``extremefast/csrc/`` (``extremefast::point_loss_fused``).

One way in: compiled on first use with ``torch.utils.cpp_extension.load`` (cached by PyTorch
under ``~/.cache/torch_extensions``) where a CUDA device and ``nvcc`` are present, with
:data:`NVCC_FLAGS`, the flags CI compiles the kernels with too. The sources ship inside the
package. A fake implementation lets ``torch.compile`` trace through the op.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..errors import BackendUnavailable
from ._fused import FusedPointLoss
from .separable import box_operator

_CSRC = Path(__file__).resolve().parents[1] / "csrc"
NVCC_FLAGS = ("-O3", "--use_fast_math")
CXX_FLAGS = ("-O3",)
_loaded = False


def _op_registered() -> bool:
    return hasattr(torch.ops, "extremefast") and hasattr(torch.ops.extremefast, "point_loss_fused")


def _register_fake():
    @torch.library.register_fake("extremefast::point_loss_fused")
    def _fake(prediction, point_channel, m0, m1, m2, half_band):
        return prediction.new_empty(()), torch.empty_like(prediction)


def load(build: bool = True) -> bool:
    """Load the op (the installed extension, else a JIT build); True when it is usable."""
    global _loaded
    if _loaded:
        return True
    if not _op_registered():
        if not build or not can_build():
            return False
        from torch.utils.cpp_extension import load as jit_load

        jit_load(name="extremefast_point_loss_cuda",
                 sources=[str(_CSRC / "point_loss_op.cpp"), str(_CSRC / "point_loss_kernels.cu")],
                 extra_cuda_cflags=list(NVCC_FLAGS), extra_cflags=list(CXX_FLAGS), verbose=False)
    if _op_registered():
        try:
            _register_fake()
        except RuntimeError:
            pass  # already registered
        _loaded = True
    return _loaded


def can_build() -> bool:
    return torch.cuda.is_available() and shutil.which("nvcc") is not None and (_CSRC / "point_loss_op.cpp").exists()


def cuda_extension_available() -> bool:
    if not torch.cuda.is_available():
        return False
    return _op_registered() or can_build()


def _forward_cuda(prediction, point_channel, num_filters, kernel_size):
    dev = prediction.device
    dtype = torch.float64 if prediction.dtype == torch.float64 else torch.float32  # float64: gradient checks
    ms = [box_operator(L, num_filters, kernel_size, dtype, dev) for L in prediction.shape[2:]]
    half_band = num_filters * (kernel_size // 2)
    return torch.ops.extremefast.point_loss_fused(prediction.to(dtype), point_channel.to(dtype), *ms, half_band)


def point_loss_cuda(prediction, point_channel, num_filters: int = 25, kernel_size: int = 3):
    if not load():
        raise BackendUnavailable("backend 'cuda' needs a CUDA device and nvcc (the op compiles on first use "
                                 "from extremefast/csrc/)")
    return FusedPointLoss.apply(_forward_cuda, prediction, point_channel, num_filters, kernel_size)
