"""Shared fixtures. Device and dtype lists for parametrised tests live here."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from extremefast.xp import cuda_available

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXTREMEFAST_SHARED_DATA", REPO.parent / "shared" / "data"))

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
# Whether a GPU is present, decided here once: CuPy must see it for the array-module paths,
# PyTorch for the network's (a machine may have one without the other).
TORCH_GPU = torch is not None and torch.cuda.is_available()
ARRAY_GPU = cuda_available()
TORCH_DEVICES = ["cpu"] + (["cuda"] if TORCH_GPU else [])
# the array module's devices (numpy; CuPy where a GPU is visible) and the float types the
# random walker and its kernels accept
ARRAY_DEVICES = ["cpu"] + (["cuda"] if ARRAY_GPU else [])
FLOAT_DTYPES = [np.float32, np.float64]

SMALL_PHANTOM_SHAPE = (112, 96, 28)
SMALL_PHANTOM_SPACING = (1.6, 1.6, 5.0)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords and not (TORCH_GPU or ARRAY_GPU):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _iterative_small_problems(request, monkeypatch):
    """The walker solves systems of at most 2**12 unknowns exactly (``segmentation._DIRECT``).
    The tests' problems are mostly that small and were written to exercise the iterative
    solvers (their modes, warm starts, batching, breakdown), so the exact band is off in
    them; a test of the band itself is marked ``exact_band``."""
    if request.node.get_closest_marker("exact_band") is None:
        from extremefast.random_walk import segmentation

        monkeypatch.setattr(segmentation, "_DIRECT", 0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """Three small phantoms (coarser grid than the default), written once per session."""
    from extremefast.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic") / "ds"
    return write_synthetic_dataset(out, cases=3, seed=5, shape=SMALL_PHANTOM_SHAPE, spacing=SMALL_PHANTOM_SPACING)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cli(capsys):
    """Run the command line in-process: returns (exit code, stdout, stderr)."""
    from extremefast.cli.main import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
