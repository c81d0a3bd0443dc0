"""What is installed and which backends can run here."""
from __future__ import annotations

import platform

from ._version import __version__
from .xp import cuda_available, has_module


def _version_of(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "not installed"


def environment_report() -> dict[str, str]:
    report = {"extremefast": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "scipy", "scikit-image", "numba", "pyamg", "h5py", "nibabel", "torch", "triton",
                 "cupy-cuda12x", "cupy-cuda13x", "monai"):
        report[name] = _version_of(name)
    report["cupy GPU (random walker)"] = "yes" if cuda_available() else "no"
    try:
        import torch

        report["torch CUDA device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:
        report["torch CUDA device"] = "torch not importable"
    from .losses.backends import available_backends

    report["point-loss backends"] = ", ".join(available_backends())
    report["numba"] = report["numba"] + (" (usable)" if has_module("numba") else "")
    from .threads import thread_report

    report.update(thread_report())
    return report
