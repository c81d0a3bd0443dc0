"""Which point-loss backends can run here."""
from __future__ import annotations

from ..xp import has_module


def available_backends() -> list[str]:
    """The point-loss backends that can run on this machine, in order of preference.

    Returns
    -------
    list of str
        The point-loss backends usable here ("reference", "separable", and "triton", "cuda"
        where they can run).
    """
    names = ["reference", "separable"]
    if has_module("triton"):
        names.append("triton")
    try:
        from .cuda import cuda_extension_available

        if cuda_extension_available():
            names.append("cuda")
    except ImportError:
        pass
    return names
