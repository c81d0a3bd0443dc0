"""The CUDA sources that CuPy compiles at run time on a GPU (NVRTC) compile here with nvcc,
so a syntax or type error in them fails on a CPU-only machine too."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from extremefast.random_walk import _kernels


@pytest.mark.parametrize("module", [_kernels], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_runtime_cuda_source_compiles(tmp_path, module):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    src = tmp_path / "kernels.cu"
    src.write_text(module._CUDA_SRC)
    done = subprocess.run([nvcc, "-c", "--std=c++14", "-arch=sm_90", str(src), "-o", str(tmp_path / "k.o")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
