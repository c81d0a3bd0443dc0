"""The array module: numpy/scipy on the CPU, cupy/cupyx on a GPU.

Array code in the toolkit is written once against ``xp`` (and ``xp_sparse``/``xp_ndimage``)
so that the CPU run exercises the same functions that run on the GPU.
"""
from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

import numpy as np

from .errors import BackendUnavailable, InputError


@lru_cache(maxsize=None)
def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True when CuPy is installed and sees a CUDA device."""
    if not has_module("cupy"):
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def resolve_device(device: str | None) -> str:
    """``"auto"``/None -> ``"cuda"`` when CuPy sees a GPU, else ``"cpu"``; checks the rest."""
    if device in (None, "auto"):
        return "cuda" if cuda_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not cuda_available():
        raise BackendUnavailable("device='cuda' needs CuPy and a CUDA GPU (pip install 'extremefast[gpu]')")
    return device


class ArrayModule:
    """Namespace bundle: ``xp`` (numpy/cupy), ``sparse``, ``ndimage``, ``linalg``."""

    def __init__(self, device: str):
        self.device = device
        if device == "cuda":
            import cupy
            import cupyx.scipy.ndimage as ndimage
            import cupyx.scipy.sparse as sparse

            self.xp = cupy
        else:
            import scipy.ndimage as ndimage
            import scipy.sparse as sparse

            self.xp = np
        self.sparse = sparse
        self.ndimage = ndimage

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        if self.device == "cuda" and not isinstance(a, np.ndarray):
            return a.get()
        return np.asarray(a)


@lru_cache(maxsize=None)
def array_module(device: str = "cpu") -> ArrayModule:
    return ArrayModule(resolve_device(device))


def module_of(a) -> ArrayModule:
    """The array module an array lives in: CuPy's for a CuPy array, else numpy's."""
    if type(a).__module__.split(".")[0] == "cupy":
        return array_module("cuda")
    return array_module("cpu")
