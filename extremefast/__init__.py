"""extremefast: weakly supervised 3D segmentation from six extreme-point clicks, fast."""
from ._version import __version__
from .errors import BackendUnavailable, DataError, ExtremefastError, InputError
from .random_walk import random_walker, random_walker_batch


def __getattr__(name):
    # torch-dependent pieces are imported on first use so `import extremefast` stays light.
    if name == "point_loss":
        from .losses import point_loss

        return point_loss
    if name == "annotate":
        from .predict import annotate

        return annotate
    raise AttributeError(f"module 'extremefast' has no attribute {name!r}")


__all__ = ["__version__", "random_walker", "random_walker_batch", "point_loss", "annotate", "ExtremefastError",
           "InputError", "DataError", "BackendUnavailable"]
