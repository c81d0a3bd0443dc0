"""Data sets (MSD layout), synthetic phantoms and the HDF5 cache."""
from .cache import ArrayCache
from .dataset import Case, Dataset, open_dataset, open_msd, train_val_split
from .synthetic import make_phantom, write_synthetic_dataset

__all__ = ["ArrayCache", "Case", "Dataset", "open_dataset", "open_msd", "train_val_split",
           "make_phantom", "write_synthetic_dataset"]
