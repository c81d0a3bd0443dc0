"""Packaging with the optional CUDA extension for the point loss.

`pip install .` always succeeds: the extension in `csrc/` is built only when
EXTREMEFAST_BUILD_CUDA=1 is set and PyTorch with CUDA plus `nvcc` are present. Without it
the package works on every backend but ``"cuda"`` (which then also can be JIT-compiled at
first use with :func:`extremefast.losses.cuda.build`).
"""
import os

from setuptools import setup

PACKAGES = [
    "extremefast",
    "extremefast.cli",
    "extremefast.data",
    "extremefast.predict",
    "extremefast.pseudo",
    "extremefast.random_walk",
    "extremefast.nn",
    "extremefast.losses",
    "extremefast.train",
]


def _cuda_extension():
    if os.environ.get("EXTREMEFAST_BUILD_CUDA", "0") != "1":
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    ext = CUDAExtension(
        name="extremefast._point_loss_cuda",
        sources=["csrc/point_loss_op.cpp", "csrc/point_loss_kernels.cu"],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--use_fast_math"]},
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _cuda_extension()

setup(
    packages=PACKAGES,
    # The command-line application lives in cli/ at the top of the repository but installs
    # as extremefast.cli, so that no top-level module named `cli` is installed.
    package_dir={"extremefast.cli": "cli"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
