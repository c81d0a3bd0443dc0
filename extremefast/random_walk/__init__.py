"""The random walker (Grady 2006): a drop-in for scikit-image's ``random_walker``.

``segmentation`` holds the public functions; ``_laplacian`` assembles the system,
``_cg`` is the one conjugate-gradient driver, ``_redblack`` the red-black reduced system,
``_kernels`` the compiled kernels they share and ``_solvers`` the direct and pyamg solves.
Importing it needs neither torch nor a GPU.
"""
from .segmentation import MODES, random_walker, random_walker_batch

__all__ = ["MODES", "random_walker", "random_walker_batch"]
