"""Extreme points of an organ mask, and the clicks of a case: read, simulated or jittered."""
from __future__ import annotations

import re

import numpy as np
from scipy import ndimage as ndi

from ..data.points import check_points, read_points
from ..errors import InputError
from ..imageio import file_affine


def extreme_points(mask) -> np.ndarray:
    """Six extreme points (6, 3) of a 3D mask: min then max along i, j and k.

    On each extremal slice the voxel nearest the slice's own centroid is taken, so the
    point sits in the middle of the organ's face rather than on an arbitrary corner.

    Parameters
    ----------
    mask : array_like
        3D mask of the organ (non-zero inside).

    Returns
    -------
    ndarray
        (6, 3) int64 voxel indices: rows 2a and 2a + 1 are the lowest and highest along axis a.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 3:
        raise InputError(f"mask must be 3D, got shape {mask.shape}")
    coords = np.argwhere(mask)
    if coords.size == 0:
        raise InputError("mask is empty: the organ has no voxel, so it has no extreme points")
    points = np.zeros((6, 3), dtype=np.int64)
    for axis in range(3):
        for side, pick in enumerate((coords[:, axis].min(), coords[:, axis].max())):
            face = coords[coords[:, axis] == pick]
            centre = face.mean(axis=0)
            points[2 * axis + side] = face[np.argmin(((face - centre) ** 2).sum(axis=1))]
    return points


def case_clicks(dataset, case, image, label: int | None, points_file=None):
    """The clicks of one case of ``dataset`` and its mask, the one rule of every command.

    Parameters
    ----------
    dataset : Dataset
    case : Case
    image : Volume
        The case's scan as ``dataset.load_image`` gives it.
    label : int or None
        The organ's label value in the case's mask (None: no mask is read).
    points_file : path, optional
        The annotator's clicks; without it the clicks are the mask's extreme points.

    Returns
    -------
    (clicks, mask, clicks_from) or None
        (6, 3) voxel indices, the organ's mask (None where there is none or it is empty; it
        only gives Dice when the clicks come from a file) and ``"mask"`` or the file's path;
        None when there is no points file and the mask has no voxel of ``label``.
    """
    mask = None
    if label is not None and case.label_path is not None:
        mask = dataset.load_labels(case, image).array == label
        if not mask.any():
            mask = None
    if points_file is not None:
        clicks = read_points(points_file, image.affine, image.shape, voxel_affine=file_affine(image))
        return clicks, mask, str(points_file)
    if mask is None:
        return None
    return extreme_points(mask), mask, "mask"


ANISOTROPY_NOTE = 3.0  # largest / smallest voxel size from which a case's spacing is noted
SMALL_ORGAN_VOXELS = 200  # masks below this many voxels are noted as small


def case_problems(points, image_shape, spacing, mask=None) -> tuple[str | None, list[str]]:
    """Why a case cannot be used (or None), and notes on what makes its result less certain.

    Unusable: two opposite clicks on one voxel (an organ one voxel across an axis at this
    spacing: no scribble joins them). Noted: clicks on the scan's border (the organ may go on
    outside the scan), a small organ, voxels far from cubic.

    Parameters
    ----------
    points : array_like
        (6, 3) voxel indices, pairs (0, 1), (2, 3), (4, 5).
    image_shape : tuple of int
    spacing : sequence of float
        Voxel size, mm.
    mask : ndarray, optional
        The organ's mask, where there is one.

    Returns
    -------
    (reason, notes)
        ``reason`` one line, or None when the case can be used; ``notes`` one line each.
    """
    pts = np.rint(np.asarray(points, dtype=np.float64)).astype(np.int64)
    shape = np.asarray(image_shape)
    spacing = np.asarray(spacing, dtype=np.float64)
    for a in range(3):
        if pts[2 * a, a] == pts[2 * a + 1, a]:
            return (f"the organ is one voxel across axis {a} ({spacing[a]:.3g} mm voxels): its two clicks on "
                    f"that axis fall on one voxel, so no scribble joins them"), []
    notes = []
    on_border = sorted({a for a in range(3) for p in pts[2 * a: 2 * a + 2] if p[a] in (0, shape[a] - 1)})
    if on_border:
        notes.append(f"the organ touches the scan's border on axis {', '.join(map(str, on_border))}: it may go on "
                     f"outside the scan, and the clicks there are where the scan ends")
    if mask is not None and int(np.count_nonzero(mask)) < SMALL_ORGAN_VOXELS:
        notes.append(f"a small organ ({int(np.count_nonzero(mask))} voxels): its Dice moves a lot with a few voxels")
    ratio = float(spacing.max() / spacing.min())
    if ratio >= ANISOTROPY_NOTE:
        notes.append(f"voxels {' x '.join(f'{v:.3g}' for v in spacing)} mm ({ratio:.1f} times longer on one axis): "
                     f"boundaries across the slices are coarse")
    return None, notes


def summarise_case_notes(notes: dict, n_cases: int) -> list[str]:
    """The notes of :func:`case_problems` over a collection, one line per kind of note.

    A note that holds for many cases (every phantom's slices are thicker than its pixels)
    reads once, with how many cases it concerns, instead of once per case; the per-case
    lines stay in the run's ``summary.json``.

    Parameters
    ----------
    notes : dict
        {case name: [note, ...]} as :func:`case_problems` gives them (cases without notes absent).
    n_cases : int
        The cases considered, with or without notes.

    Returns
    -------
    list of str
        E.g. ``"10 of 10 cases: slices 3.1 times thicker than their pixels: boundaries across
        the slices are coarse"``.
    """
    kinds: dict[str, list] = {}
    for lines in notes.values():
        for line in lines:
            for kind, pattern in _NOTE_KINDS.items():
                found = re.search(pattern, line)
                if found:
                    kinds.setdefault(kind, []).append(found.group(1) if found.groups() else None)
                    break
            else:
                kinds.setdefault(line, []).append(None)
    out = []
    for kind, values in kinds.items():
        if kind == "anisotropy":
            ratios = sorted(float(v) for v in values)
            span = f"{ratios[0]:.1f}" if ratios[-1] - ratios[0] < 0.05 else f"{ratios[0]:.1f}-{ratios[-1]:.1f}"
            text = f"slices {span} times thicker than their pixels: boundaries across the slices are coarse"
        else:
            text = _NOTE_SUMMARIES.get(kind, kind)
        out.append(f"{len(values)} of {n_cases} cases: {text}")
    return out


# the kinds of note case_problems writes, found again in its lines, and how a summary reads them
_NOTE_KINDS = {"border": r"^the organ touches the scan's border", "small": r"^a small organ",
               "anisotropy": r"\(([0-9.]+) times longer on one axis\)"}
_NOTE_SUMMARIES = {"border": "the organ touches the scan's border: it may go on outside the scan",
                   "small": f"a small organ (under {SMALL_ORGAN_VOXELS} voxels): Dice moves a lot with a few voxels"}


def simulate_clicks(points, mask, spacing, sigma_mm: float = 2.0, rng=None, max_tries: int = 20) -> np.ndarray:
    """Points with two-sided Gaussian noise of ``sigma_mm`` per axis, kept inside the organ.

    Each point is displaced by N(0, sigma_mm) mm in every axis (negative as well as positive
    offsets). A draw that leaves the mask is redrawn; after ``max_tries`` the point snaps
    to the nearest mask voxel of its last draw.

    Parameters
    ----------
    points : array_like
        (6, 3) voxel indices, e.g. :func:`extreme_points` of ``mask``.
    mask : array_like
        The organ's 3D mask; every simulated click stays inside it.
    spacing : sequence of float
        Voxel size in mm.
    sigma_mm : float
        Standard deviation of the noise per axis, mm.
    rng : int or numpy.random.Generator, optional
    max_tries : int
        Redraws before snapping to the mask.

    Returns
    -------
    ndarray
        (6, 3) int64 voxel indices inside ``mask``.
    """
    mask = np.asarray(mask).astype(bool)
    points = check_points(points, mask.shape)
    if not mask.any():
        raise InputError("mask is empty: cannot keep clicks inside the organ")
    rng = np.random.default_rng(rng)
    spacing = np.asarray(spacing, dtype=np.float64)
    sigma_vox = float(sigma_mm) / spacing
    shape = np.array(mask.shape)
    out = points.copy()
    nearest = None
    for n, p in enumerate(points):
        for _ in range(max_tries):
            q = np.clip(np.rint(p + rng.normal(0.0, 1.0, 3) * sigma_vox), 0, shape - 1).astype(np.int64)
            if mask[tuple(q)]:
                break
        else:
            if nearest is None:
                nearest = ndi.distance_transform_edt(~mask, sampling=spacing, return_distances=False,
                                                     return_indices=True)
            q = nearest[:, q[0], q[1], q[2]]
        out[n] = q
    return out


def jitter_points(points: np.ndarray, spacing, sigma_mm: float, rng: np.random.Generator, shape) -> np.ndarray:
    """Two-sided Gaussian click noise (mm) on every coordinate, kept inside the image."""
    noise = rng.normal(0.0, 1.0, points.shape) * (float(sigma_mm) / np.asarray(spacing, dtype=np.float64))
    return np.clip(np.rint(points + noise), 0, np.asarray(shape) - 1).astype(np.int64)
