"""Six clicks from files annotators produce, as voxel coordinates of a given image.

Forms read by :func:`read_points`:

* ``{"space": "voxel", "points": [[i, j, k], ...]}`` -- voxel indices of the image array;
* ``{"space": "RAS" | "LPS", "points": [[x, y, z], ...]}`` -- world coordinates in mm;
* a 3D Slicer markups file (``*.mrk.json``): the control points of its first markup, in
  the ``coordinateSystem`` it declares (``LPS`` when absent, Slicer's file default).

World coordinates map to voxels through the inverse of the image's affine (NIfTI affines
are RAS; LPS flips the first two axes). Every error is one line naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..errors import DataError, InputError
from ..nifti import voxel_spacing

SPACES = ("voxel", "RAS", "LPS")
POINTS_SUFFIXES = (".mrk.json", ".json")
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def world_to_voxel(points, affine, space: str = "RAS") -> np.ndarray:
    """World coordinates (mm, ``space`` RAS or LPS) -> continuous voxel coordinates.

    Parameters
    ----------
    points : array_like
        (n, 3) world coordinates, mm.
    affine : ndarray
        4x4 voxel-to-world (RAS).
    space : {"RAS", "LPS"}

    Returns
    -------
    ndarray
        (n, 3) float64 voxel coordinates.
    """
    pts = np.asarray(points, dtype=np.float64)
    if space == "LPS":
        pts = pts * _LPS_TO_RAS
    homog = np.c_[pts, np.ones(len(pts))]
    return (np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ homog.T).T[:, :3]


def voxel_to_world(points, affine, space: str = "RAS") -> np.ndarray:
    """Voxel coordinates -> world coordinates in mm (``space`` RAS or LPS).

    Parameters
    ----------
    points : array_like
        (n, 3) voxel coordinates.
    affine : ndarray
        4x4 voxel-to-world (RAS).
    space : {"RAS", "LPS"}

    Returns
    -------
    ndarray
        (n, 3) float64 world coordinates, mm.
    """
    pts = np.asarray(points, dtype=np.float64)
    world = (np.asarray(affine, dtype=np.float64) @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
    return world * _LPS_TO_RAS if space == "LPS" else world


def points_file_for(folder, case: str) -> Path | None:
    """The points file of ``case`` in ``folder``: ``case.mrk.json`` or ``case.json``, the case
    name with or without an ``_0000`` channel suffix; None when there is none."""
    names = [case, case[:-5]] if case.endswith("_0000") else [case]
    candidates = [Path(folder) / f"{n}{ext}" for n in names for ext in POINTS_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def list_points_files(folder) -> list[Path]:
    """Every points file of ``folder`` (``*.mrk.json``, ``*.json``), hidden files left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: points folder not found")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(POINTS_SUFFIXES) and not p.name.startswith("."))


def match_points_files(points_dir, names) -> tuple[dict, list[str]]:
    """Each of ``names`` (case or scan names) with its points file, by :func:`points_file_for`.

    Returns ({name: points file or None}, names of the folder's points files that no name
    pairs with): the one rule every command pairs scans and clicks by.
    """
    points_dir = Path(points_dir)
    found = {n: points_file_for(points_dir, n) for n in names}
    paired = set(found.values())
    return found, [p.name for p in list_points_files(points_dir) if p not in paired]


def pair_points(dataset, points_dir) -> tuple[dict, list[str]]:
    """({case name: points file}, names of cases without one) for the cases of ``dataset``.

    A points file whose case is not in the data set is an error naming it: a click file
    without its scan is a typo or a missing scan, never something to ignore.
    """
    points_dir = Path(points_dir)
    found, orphans = match_points_files(points_dir, [c.name for c in dataset.cases])
    if orphans:
        raise DataError(f"{points_dir}: no scan in {dataset.root} for the points file(s) {', '.join(orphans[:5])}; "
                        "name each points file after its scan (CASE.mrk.json beside CASE.nii.gz)")
    paired = {n: p for n, p in found.items() if p is not None}
    if not paired:
        raise DataError(f"{points_dir}: no points file matches a scan of {dataset.root} (expected CASE.mrk.json or "
                        "CASE.json)")
    return paired, sorted(n for n, p in found.items() if p is None)


def pair_clicks(dataset, points_dir, log=print) -> tuple[dict | None, list[str]]:
    """:func:`pair_points` for a run given ``points_dir`` (None: no clicks, ``(None, [])``), saying
    in one line through ``log`` which cases have no points file and are left out."""
    if points_dir is None:
        return None, []
    paired, without = pair_points(dataset, points_dir)
    if without:
        log(f"{len(without)} case(s) have no points file and are left out: {', '.join(without[:8])}"
            + (" ..." if len(without) > 8 else ""))
    return paired, without


def read_points(path, affine, shape, *, voxel_affine=None) -> np.ndarray:
    """The six clicks of a points file as (6, 3) int64 voxel indices of an image of
    ``shape`` with ``affine``; a one-line error for anything malformed or outside.

    The clicks may come in any order: they are paired into opposite extreme points per
    axis (:func:`~extremefast.data.points.arrange_clicks`).

    ``voxel_affine``: the affine of the grid that voxel-space files index, where it is not
    ``affine`` (the file's own grid, for an image read with its axes reoriented).

    Parameters
    ----------
    path : path
        The points file.
    affine : ndarray
        4x4 voxel-to-world (RAS) of the image the points are for.
    shape : tuple of int
        That image's shape.
    voxel_affine : ndarray, optional

    Returns
    -------
    ndarray
        (6, 3) int64 voxel indices, paired by axis.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: points file not found")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON points file ({type(exc).__name__})") from None
    try:
        raw, space = _parse(doc)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if space == "voxel" and voxel_affine is not None:
        raw, space = voxel_to_world(raw, voxel_affine), "RAS"
    voxel = raw if space == "voxel" else world_to_voxel(raw, affine, space)
    try:
        # paired as the voxels they land on, so that float noise of the world round trip
        # cannot break a tie between two pairings differently for the same voxels
        return check_points(arrange_clicks(np.rint(voxel), voxel_spacing(np.asarray(affine, dtype=np.float64))), shape)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _parse(doc) -> tuple[np.ndarray, str]:
    if isinstance(doc, dict) and "markups" in doc:
        return _parse_slicer(doc)
    if not isinstance(doc, dict) or "points" not in doc or "space" not in doc:
        raise InputError('expected {"space": "voxel"|"RAS"|"LPS", "points": [[x, y, z], ...]} '
                         'or a 3D Slicer .mrk.json file')
    space = str(doc["space"])
    canonical = {s.lower(): s for s in SPACES}
    if space.lower() not in canonical:
        raise InputError(f"unknown coordinate space {space!r}; use one of {', '.join(SPACES)}")
    return _as_points(doc["points"]), canonical[space.lower()]


def _parse_slicer(doc) -> tuple[np.ndarray, str]:
    markups = doc.get("markups")
    if not isinstance(markups, list) or not markups or not isinstance(markups[0], dict):
        raise InputError("Slicer markups file holds no markup")
    markup = markups[0]
    system = str(markup.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise InputError(f"unknown Slicer coordinateSystem {system!r}; expected LPS or RAS")
    units = str(markup.get("coordinateUnits", "mm"))
    if units != "mm":
        raise InputError(f"Slicer coordinateUnits {units!r} is not supported; expected mm")
    control = markup.get("controlPoints")
    if not isinstance(control, list):
        raise InputError("Slicer markup has no controlPoints list")
    try:
        positions = [cp["position"] for cp in control]
    except (TypeError, KeyError):
        raise InputError("a Slicer control point has no position") from None
    return _as_points(positions), system


def _as_points(values) -> np.ndarray:
    try:
        pts = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("points must be numbers, six rows of three") from None
    if pts.shape != (6, 3):
        raise InputError(f"expected six 3D points (6, 3), got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError("points hold NaN or Inf")
    return pts


def write_points(path, points, affine=None, space: str = "voxel", *, slicer: bool = False) -> Path:
    """Write six voxel points as a points file in ``space`` (a Slicer markups file with
    ``slicer=True``; its coordinate system is then ``space``, RAS or LPS).

    Parameters
    ----------
    path : path
        The file to write (atomically).
    points : array_like
        (6, 3) voxel indices.
    affine : ndarray, optional
        Needed for world coordinates.
    space : {"voxel", "RAS", "LPS"}
    slicer : bool

    Returns
    -------
    Path
    """
    path = Path(path)
    pts = np.asarray(points, dtype=np.float64)
    if space not in SPACES:
        raise InputError(f"unknown coordinate space {space!r}; use one of {', '.join(SPACES)}")
    if space != "voxel":
        if affine is None:
            raise InputError(f"writing {space} points needs the image's affine")
        pts = voxel_to_world(pts, affine, space)
    if slicer:
        if space == "voxel":
            raise InputError("Slicer markups files hold world coordinates: use space RAS or LPS")
        doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                          "Resources/Schema/markups-schema-v1.0.3.json#",
               "markups": [{"type": "Fiducial", "coordinateSystem": space, "coordinateUnits": "mm",
                            "controlPoints": [{"id": str(i + 1), "label": f"E-{i + 1}", "position": p.tolist()}
                                              for i, p in enumerate(pts)]}]}
    else:
        doc = {"space": space, "points": pts.tolist()}
    return write_text(path, json.dumps(doc, indent=1))


def arrange_clicks(points, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Six clicks in any order -> three pairs of opposite extreme points, pair ``a`` on axis ``a``.

    An annotator clicks the six extreme points in whatever order; the geodesic scribbles
    join the two points of each pair. The pairing chosen is the one whose pairs lie farthest
    apart along their axes (in mm, summed over the three axes): the two extreme points of an
    axis span the organ's whole extent along it, no other pair spans more, so for exact
    extreme points it is the true pairing, and with a few mm of click noise it changes only
    where two extents nearly tie. Points already in that order come back unchanged.

    Parameters
    ----------
    points : (6, 3) array of voxel coordinates.
    spacing : voxel size in mm per axis.

    Returns
    -------
    (6, 3) array, the same points reordered: ``2a`` and ``2a + 1`` are the pair on axis ``a``,
    the lower coordinate first where the order had to change.
    """
    from itertools import permutations

    pts = np.asarray(points)
    if pts.shape != (6, 3):
        raise InputError(f"expected six 3D points (6, 3), got shape {pts.shape}")
    scale = np.asarray(spacing, dtype=np.float64)
    coords = pts.astype(np.float64) * scale

    def spread(order) -> float:
        return sum(abs(coords[order[2 * a], a] - coords[order[2 * a + 1], a]) for a in range(3))

    best = max(permutations(range(6)), key=spread)
    if spread(range(6)) >= spread(best) - 1e-9:
        return pts
    order = []
    for a in range(3):
        i, j = best[2 * a], best[2 * a + 1]
        order += [i, j] if pts[i, a] <= pts[j, a] else [j, i]
    return pts[order]


def check_points(points, shape) -> np.ndarray:
    """Six integer voxel points inside ``shape``, as a (6, 3) int64 array, or a clear error.

    Parameters
    ----------
    points : array_like
        Six 3D points (voxel coordinates; rounded to the nearest voxel).
    shape : tuple of int
        The image's shape.

    Returns
    -------
    ndarray
        (6, 3) int64 voxel indices. Raises :class:`~extremefast.InputError` for another shape,
        NaN, a point outside the image or the two points of a pair on one voxel.
    """
    pts = np.asarray(points)
    if pts.shape != (6, 3):
        raise InputError(f"expected six 3D points (6, 3), got shape {pts.shape}")
    if not np.all(np.isfinite(pts.astype(np.float64))):
        raise InputError("points hold NaN or Inf")
    pts = np.rint(pts).astype(np.int64)
    bad = np.any((pts < 0) | (pts >= np.asarray(shape)), axis=1)
    if bad.any():
        n = int(np.argmax(bad))
        raise InputError(f"point {n} {pts[n].tolist()} is outside the image of shape {tuple(shape)}")
    for a in range(3):
        if np.array_equal(pts[2 * a], pts[2 * a + 1]):
            raise InputError(f"points {2 * a} and {2 * a + 1} (axis {a}) are the same voxel {pts[2 * a].tolist()}")
    return pts
