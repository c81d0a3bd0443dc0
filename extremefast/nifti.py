"""NIfTI read and write that keep the affine and the voxel spacing.

Arrays are in the voxel order of the file (i, j, k); the spacing in mm comes from the
header. Writing goes to a temporary name in the same folder and is renamed into place,
so a killed process never leaves a half-written file under the final name.
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import DataError, InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")  # NIfTI's; ".nii.gz" first, so that a stem loses both parts


@dataclass
class Volume:
    """A 3D array with its voxel-to-world affine (RAS, mm)."""

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    # set by :func:`extremefast.imageio.orient`: how the file's axes were permuted and flipped
    file_transform: np.ndarray | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        return voxel_spacing(self.affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along i, j, k: the lengths of the affine's first three columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def load_nifti(path, *, dtype=np.float32, check_finite: bool = False) -> Volume:
    """Read a 3D NIfTI file.

    A 4D file with a single volume (trailing axis of length 1) is accepted as 3D; anything
    else that is not 3D is refused. Errors name the file and the problem.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a NIfTI file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, zlib.error,
            gzip.BadGzipFile, ValueError) as exc:
        raise DataError(f"{path}: not a readable NIfTI file (truncated or corrupt: {_short(exc)})") from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 3D image, got {array.ndim}D with shape {tuple(array.shape)}")
    if min(array.shape) < 1:
        raise DataError(f"{path}: image has an empty axis, shape {tuple(array.shape)}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise DataError(f"{path}: the affine holds NaN or Inf")
    spacing = voxel_spacing(affine)
    if min(spacing) <= 0:
        raise DataError(f"{path}: voxel spacing must be > 0, got {spacing}")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if check_finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        n_bad = int(np.count_nonzero(~np.isfinite(array)))
        raise DataError(f"{path}: {n_bad} voxels are NaN or Inf")
    return Volume(np.ascontiguousarray(array), affine, path)


def save_nifti(path, array, affine, *, dtype=None) -> Path:
    """Write a 3D array with its affine, atomically (temporary name, then rename)."""
    import nibabel as nib

    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"save_nifti: array must be 3D, got shape {array.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"save_nifti: affine must be 4x4, got shape {affine.shape}")
    if dtype is not None:
        array = array.astype(dtype)
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    ensure_output_folder(path.parent)
    with atomic_write(path) as tmp:
        nib.save(img, str(tmp))
    return path


def nifti_stem(path) -> str:
    """A NIfTI file's name without ``.nii.gz`` or ``.nii``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def ensure_output_folder(folder) -> Path:
    """Create ``folder`` if needed and check it is a writable folder (one-line errors otherwise)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: a file is in the way of the output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"{folder}: output folder is not writable")
    return folder


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
