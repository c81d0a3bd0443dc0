"""Scans and masks in the formats annotators' tools write, with their geometry kept exactly.

Read and written here: NIfTI (``.nii``, ``.nii.gz``, through nibabel), NRRD (``.nrrd``,
``.nhdr``; 3D Slicer's default, and its ``.seg.nrrd`` segmentations), MetaImage (``.mha``,
``.mhd``) and, for reading, a DICOM series given as a folder (:data:`FORMATS` lists the file
formats). NIfTI goes through nibabel, whose sform/qform rules decide its geometry; every other
format through SimpleITK, one library (ITK's readers, as 3D Slicer uses them) that reads all of
them with the same geometry rules, sorts DICOM slices by position and applies the rescale to
Hounsfield units. SimpleITK is imported on first use, once, with ITK's console warnings turned
off then (its errors still raise, reported as one line naming the file).

Geometry: every :class:`~extremefast.nifti.Volume` carries a voxel-to-world affine in RAS mm,
whatever the file stores (ITK and DICOM store LPS: x and y are negated on the way in and out).
Arrays are in the file's voxel order (i, j, k), i.e. ITK's (x, y, z).

Orientation: :func:`load_image` with ``oriented=True`` permutes and flips the axes to the
order closest to LPS (DICOM's axial order), so the same scan read from NIfTI, NRRD or DICOM
gives the same array and the computations on it the same answer; :func:`in_file_grid`
turns a result back into the file's voxel order for writing.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import DataError, InputError
from .nifti import NIFTI_SUFFIXES, Volume, ensure_output_folder, load_nifti, save_nifti, voxel_spacing

__all__ = ["FORMATS", "OUTPUT_FORMATS", "SUFFIXES", "load_image", "save_image", "list_images", "image_suffix", "image_stem",
           "is_dicom_folder", "orient", "in_file_grid", "file_affine", "itk_geometry", "ras_affine",
           "write_dicom_series"]

# The image file formats, in one place: suffix -> name, each read and written (a DICOM series, a
# folder, is read only). ".seg.nrrd" comes before ".nrrd", so that a segmentation is known as one.
FORMATS = {**dict.fromkeys(NIFTI_SUFFIXES, "NIfTI"), ".seg.nrrd": "3D Slicer segmentation (NRRD)",
           ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}
SUFFIXES = tuple(FORMATS)
# the formats an output is asked for by name (predict --format): those of one file (.nhdr and .mhd
# write a header and a data file), and "input": the scan's own
OUTPUT_FORMATS = (*(suffix[1:] for suffix in FORMATS if suffix not in (".nhdr", ".mhd")), "input")
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (its own inverse)
_ORIENTED = ("L", "P", "S")  # the voxel order of an axial DICOM series


@functools.cache
def _sitk():
    """SimpleITK, imported on first use (it is slow to import and NIfTI does not need it), with
    ITK's console warnings turned off once: its errors still raise, and are reported as one line
    naming the file."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def _format_list() -> str:
    """'NIfTI (.nii.gz, .nii), ...': the formats by name with their suffixes, for error messages."""
    by_name: dict[str, list[str]] = {}
    for suffix, name in FORMATS.items():
        by_name.setdefault(name.split(" (")[0], []).append(suffix)
    return ", ".join(f"{name} ({', '.join(group)})" for name, group in by_name.items())


def image_suffix(path) -> str | None:
    """The known image suffix of ``path`` (lower case), or None.

    Parameters
    ----------
    path : path

    Returns
    -------
    str or None
    """
    name = Path(path).name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def image_stem(path) -> str:
    """A scan's case name: the file name without its image suffix (a DICOM folder's name).

    Parameters
    ----------
    path : path

    Returns
    -------
    str
    """
    path = Path(path)
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def is_dicom_folder(path) -> bool:
    """A folder that holds at least one DICOM series.

    Parameters
    ----------
    path : path

    Returns
    -------
    bool
    """
    path = Path(path)
    if not path.is_dir():
        return False
    sitk = _sitk()
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def list_images(folder) -> list[Path]:
    """The scans of ``folder``: files with an image suffix and subfolders holding a DICOM series.

    Parameters
    ----------
    folder : path

    Returns
    -------
    list of Path
        Sorted by name.
    """
    folder = Path(folder)
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and image_suffix(p):
            found.append(p)
        elif p.is_dir() and is_dicom_folder(p):
            found.append(p)
    return found


def load_image(path, *, dtype=np.float32, check_finite: bool = False, oriented: bool = False) -> Volume:
    """Read a 3D scan or mask (any format above, or a DICOM folder) as a :class:`Volume`.

    Errors are one line naming the file and what is wrong with it.

    Parameters
    ----------
    path : path
        A file of a known suffix, or a folder holding one DICOM series.
    dtype : numpy dtype or None
        Convert the voxels to it (None: as stored).
    check_finite : bool
        Refuse NaN or Inf voxels.
    oriented : bool
        Permute and flip the axes to the order closest to LPS.

    Returns
    -------
    Volume
        Array and RAS affine.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = image_suffix(path)
    if path.is_dir():
        volume = _load_dicom_series(path)
    elif suffix in NIFTI_SUFFIXES:
        volume = load_nifti(path, dtype=None)
    elif suffix is not None:
        volume = _load_itk_file(path)
    else:
        raise DataError(f"{path}: unknown image format; use {_format_list()} or a folder holding one DICOM series")
    array = volume.array
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if check_finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        n_bad = int(np.count_nonzero(~np.isfinite(array)))
        raise DataError(f"{path}: {n_bad} voxels are NaN or Inf")
    volume = Volume(np.ascontiguousarray(array), volume.affine, path)
    return orient(volume) if oriented else volume


def save_image(path, array, affine, *, dtype=None, segment_name: str | None = None) -> Path:
    """Write a 3D array with its RAS affine in the format the file name asks for.

    ``.nii.gz``/``.nii`` (NIfTI), ``.nrrd``/``.nhdr``, ``.seg.nrrd`` (a 3D Slicer segmentation:
    label 1 becomes a segment named ``segment_name``), ``.mha``/``.mhd``. The file appears
    under its final name only once complete (a ``.mhd`` header is written last, after its data).

    Parameters
    ----------
    path : path
        The file; its suffix picks the format.
    array : ndarray
        3D voxels in the file's voxel order.
    affine : ndarray
        4x4 voxel-to-world (RAS).
    dtype : numpy dtype, optional
    segment_name : str, optional
        The segment's name in ``.seg.nrrd`` files.

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise InputError(f"{path}: unknown output format; name it {', '.join(SUFFIXES)}")
    if suffix in NIFTI_SUFFIXES:
        return save_nifti(path, array, affine, dtype=dtype)
    sitk = _sitk()
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"save_image: array must be 3D, got shape {array.shape}")
    if dtype is not None:
        array = array.astype(dtype)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    origin, spacing, direction = itk_geometry(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    if suffix == ".seg.nrrd":
        for key, value in _slicer_segment_fields(array, segment_name or "segment").items():
            image.SetMetaData(key, value)
    ensure_output_folder(path.parent)
    if suffix == ".mhd":  # header and data file: the data file's name is written into the header
        return _write_itk(image, path, path)
    with atomic_write(path) as tmp:
        _write_itk(image, tmp, path)
    return path


def itk_geometry(affine) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) in ITK's LPS convention from a RAS voxel-to-world affine.

    Parameters
    ----------
    affine : ndarray
        4x4 voxel-to-world (RAS).

    Returns
    -------
    origin, spacing, direction : tuple
        ITK's (LPS) origin, voxel size and row-major direction cosines.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    linear = _LPS @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"affine has a zero-length axis (spacing {tuple(spacing)})")
    return tuple(_LPS @ affine[:3, 3]), tuple(spacing), tuple((linear / spacing).ravel())


def ras_affine(origin, spacing, direction) -> np.ndarray:
    """The RAS voxel-to-world affine of ITK's LPS (origin, spacing, direction).

    Parameters
    ----------
    origin, spacing, direction : sequence of float
        ITK's (LPS) geometry; ``direction`` row-major 3x3.

    Returns
    -------
    ndarray
        4x4 voxel-to-world affine (RAS).
    """
    affine = np.eye(4)
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine[:3, :3] = _LPS @ direction @ np.diag(np.asarray(spacing, dtype=np.float64))
    affine[:3, 3] = _LPS @ np.asarray(origin, dtype=np.float64)
    return affine


def orient(volume: Volume) -> Volume:
    """The volume with its axes permuted and flipped to the order closest to LPS.

    The returned volume remembers the file's order: ``in_file_grid`` maps an array on its grid
    back to the file's grid (the orientation is a permutation with flips, so nothing is resampled).

    Parameters
    ----------
    volume : Volume

    Returns
    -------
    Volume
        The same voxels with axes closest to L, P, S; its ``file_transform`` undoes it.
    """
    from nibabel import orientations as no

    file_ornt = no.io_orientation(volume.affine)
    transform = no.ornt_transform(file_ornt, no.axcodes2ornt(_ORIENTED))
    array = np.ascontiguousarray(no.apply_orientation(volume.array, transform))
    affine = volume.affine @ no.inv_ornt_aff(transform, volume.array.shape)
    return Volume(array, affine, volume.path, transform)


def _inverse_ornt(transform: np.ndarray) -> np.ndarray:
    inverse = np.zeros_like(transform)
    for axis, (target, flip) in enumerate(transform):
        inverse[int(target)] = (axis, flip)
    return inverse


def file_affine(volume: Volume) -> np.ndarray:
    """The affine of the file's own voxel grid (``volume.affine`` unless it was reoriented).

    Parameters
    ----------
    volume : Volume

    Returns
    -------
    ndarray
        4x4 affine (RAS) of the file's own voxel order.
    """
    if volume.file_transform is None:
        return volume.affine
    from nibabel import orientations as no

    return volume.affine @ no.inv_ornt_aff(_inverse_ornt(volume.file_transform), volume.shape)


def in_file_grid(volume: Volume, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(array, affine) of a result on ``volume``'s grid, put back in the voxel order of its file.

    Parameters
    ----------
    volume : Volume
        A volume read with ``oriented=True``.
    array : ndarray
        A result on its (reoriented) grid.

    Returns
    -------
    array : ndarray
        The result in the file's voxel order.
    affine : ndarray
        The file's affine.
    """
    transform = volume.file_transform
    if transform is None:
        return array, volume.affine
    from nibabel import orientations as no

    back = np.ascontiguousarray(no.apply_orientation(array, _inverse_ornt(transform)))
    return back, file_affine(volume)


# ---------------------------------------------------------------------------------- SimpleITK
def _volume_from_itk(image, path: Path) -> Volume:
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: {image.GetNumberOfComponentsPerPixel()} values per voxel (a colour or "
                        "vector image); expected one intensity per voxel")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        more = " (a segmentation with overlapping segments in layers: export it as a labelmap)" \
            if image.GetDimension() == 4 else ""
        raise DataError(f"{path}: expected a 3D image, got {image.GetDimension()}D with size "
                        f"{tuple(image.GetSize())}{more}")
    if "complex" in image.GetPixelIDTypeAsString():
        raise DataError(f"{path}: complex voxels; expected real intensities")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = ras_affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    if not np.all(np.isfinite(affine)) or min(voxel_spacing(affine)) <= 0:
        raise DataError(f"{path}: broken geometry (spacing {image.GetSpacing()}, origin {image.GetOrigin()})")
    return Volume(np.ascontiguousarray(array), affine, path)


def _load_itk_file(path: Path) -> Volume:
    sitk = _sitk()
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: not a readable {FORMATS[image_suffix(path)]} file "
                        f"(truncated or corrupt: {_itk_reason(exc)})") from None
    return _volume_from_itk(image, path)


def _load_dicom_series(folder: Path) -> Volume:
    sitk = _sitk()
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise DataError(f"{folder}: a folder given as a scan must hold one DICOM series; none found")
    if len(ids) > 1:
        raise DataError(f"{folder}: holds {len(ids)} DICOM series; put each series in a folder of its own")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    kinds, positions = set(), []
    info = sitk.ImageFileReader()
    for name in files:
        info.SetFileName(name)
        try:
            info.ReadImageInformation()
        except RuntimeError as exc:
            raise DataError(f"{name}: not a readable DICOM file ({_itk_reason(exc)})") from None
        kinds.add((sitk.GetPixelIDValueAsString(info.GetPixelID()), tuple(info.GetSize()[:2])))
        positions.append(np.asarray(info.GetOrigin(), dtype=np.float64))
    if len(kinds) > 1:
        what = "; ".join(f"{k[0]} {k[1][0]}x{k[1][1]}" for k in sorted(kinds))
        raise DataError(f"{folder}: its slices differ in voxel type or size ({what}); "
                        "keep one series of one kind per folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"{folder}: the DICOM series cannot be read ({_itk_reason(exc)})") from None
    if len(files) > 2:
        normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
        steps = np.diff(np.sort(np.asarray(positions) @ normal))
        if steps.min() <= 0 or steps.max() - steps.min() > 0.01 * steps.mean() + 1e-3:
            raise DataError(f"{folder}: slices are not evenly spaced ({steps.min():.3g} to {steps.max():.3g} mm "
                            "apart): missing or duplicate slices")
    return _volume_from_itk(image, folder)


def _write_itk(image, target: Path, final: Path) -> Path:
    sitk = _sitk()
    try:
        sitk.WriteImage(image, str(target), useCompression=True)
    except RuntimeError as exc:
        raise DataError(f"{final}: could not write ({_itk_reason(exc)})") from None
    return final


def _slicer_segment_fields(array: np.ndarray, name: str) -> dict[str, str]:
    """The header fields with which 3D Slicer reads a labelmap NRRD as a segmentation."""
    nonzero = np.nonzero(array)
    extent = " ".join(f"{int(a.min())} {int(a.max())}" if a.size else "0 -1" for a in nonzero)
    return {"Segment0_ID": "Segment_1", "Segment0_Name": name, "Segment0_LabelValue": "1",
            "Segment0_Layer": "0", "Segment0_Color": "0.945 0.839 0.569", "Segment0_Extent": extent,
            "Segment0_Tags": "", "Segmentation_MasterRepresentation": "Binary labelmap",
            "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
            "Segmentation_ReferenceImageExtentOffset": "0 0 0"}


def write_dicom_series(folder, array, affine, *, modality: str = "CT") -> Path:
    """Write an integer 3D array as an axial DICOM series (one file per slice along k).

    For exchanging scans with tools that read only DICOM, and for checking that a series gives
    the same geometry as the NIfTI it came from. Intensities are stored as they are (rescale 1, 0).

    Parameters
    ----------
    folder : path
        Created; one file per slice.
    array : ndarray
        3D integer voxels.
    affine : ndarray
        4x4 voxel-to-world (RAS).
    modality : str

    Returns
    -------
    Path
    """
    sitk = _sitk()
    array = np.asarray(array)
    if array.ndim != 3 or array.dtype.kind not in "iu":
        raise InputError(f"write_dicom_series: expected a 3D integer array, got {array.dtype} {array.shape}")
    origin, spacing, direction = itk_geometry(affine)
    folder = ensure_output_folder(folder)
    cols = np.asarray(direction).reshape(3, 3)
    # DICOM orders slices along row x column; a left-handed grid is written with k reversed
    flip = float(np.dot(np.cross(cols[:, 0], cols[:, 1]), cols[:, 2])) < 0
    uid = "1.2.826.0.1.3680043.8.498." + str(abs(hash((array.shape, origin))) % 10**12)
    orientation = "\\".join(f"{v:.10g}" for v in np.r_[cols[:, 0], cols[:, 1]])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = array.shape[2]
    for out_index in range(n):
        k = n - 1 - out_index if flip else out_index
        plane = sitk.GetImageFromArray(np.ascontiguousarray(array[:, :, k].T))
        plane.SetSpacing(spacing[:2])
        position = np.asarray(origin) + cols[:, 2] * spacing[2] * k
        for tag, value in (("0008|0060", modality), ("0020|000d", uid + ".1"), ("0020|000e", uid + ".2"),
                           ("0008|0018", f"{uid}.3.{out_index + 1}"), ("0020|0013", str(out_index + 1)),
                           ("0020|0032", "\\".join(f"{v:.10g}" for v in position)),
                           ("0020|0037", orientation), ("0018|0050", f"{spacing[2]:.10g}"),
                           ("0028|1052", "0"), ("0028|1053", "1")):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{out_index + 1:04d}.dcm"))
        writer.Execute(plane)
    return folder


def _itk_reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.lower().startswith(("description", "itk::error"))]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.replace("Description:", "").strip()[:160]
