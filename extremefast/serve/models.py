"""The server's two models: six clicks on a scan in memory -> a mask on the scan's grid.

``extreme_points_walker`` is :func:`~extremefast.pseudo.pseudo_label_from_points` with the settings of
``extremefast pseudo-label`` (the default preset, the collection's modality window), on the scan oriented
as the toolkit reads it; the clicks go from the file's voxel indices to that grid through world space, as
``read_points`` takes them from a ``.mrk.json`` file, so the mask equals what ``pseudo-label --points``
writes from the saved clicks. ``extreme_points_model`` is a :class:`~extremefast.predict.Predictor` of a run
the server trained itself, averaged with the walker (``predict --with-walker``).

One lock serialises the computations: the compiled kernels run on every core already (two parallel solves
on a 2-core machine only share them), and Numba's default threading layer must not be entered from two
threads at once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..data.points import arrange_clicks, check_points, voxel_to_world, world_to_voxel
from ..errors import InputError
from ..nifti import voxel_spacing
from ..pseudo.pseudo_label import get_preset, pseudo_label_from_points, window_for_modality
from .datastore import Scan
from .errors import NotFound

WALKER = "extreme_points_walker"
MODEL = "extreme_points_model"
NEEDED = 6
_COMPUTE = threading.Lock()


def parse_points(values) -> np.ndarray:
    """Clicks as sent (a list of ``[i, j, k]`` numbers) -> (n, 3) float64, or a one-line refusal."""
    if values is None:
        return np.zeros((0, 3))
    if not isinstance(values, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in values):
        raise InputError("foreground must be a list of [i, j, k] voxel indices")
    if any(len(p) != 3 for p in values):
        raise InputError("each foreground point must be three voxel indices [i, j, k]")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in values for v in p):
        raise InputError("foreground points must be numbers [i, j, k]")
    pts = np.asarray(values, dtype=np.float64).reshape(len(values), 3)
    if not np.all(np.isfinite(pts)):
        raise InputError("foreground points hold NaN or Inf")
    return pts


def six_points(values, scan: Scan) -> np.ndarray:
    """Exactly six clicks inside ``scan`` as voxel indices of its file (a one-line refusal otherwise)."""
    pts = parse_points(values)
    if len(pts) != NEEDED:
        raise InputError(f"needs exactly six extreme points, got {len(pts)}")
    return check_inside(pts, scan)


def check_inside(points: np.ndarray, scan: Scan) -> np.ndarray:
    """Points rounded to voxels of the scan file, each inside it (a one-line refusal naming the first outside)."""
    pts = np.rint(points).astype(np.int64)
    bad = np.any((pts < 0) | (pts >= np.asarray(scan.file_shape)), axis=1)
    if bad.any():
        n = int(np.argmax(bad))
        raise InputError(f"point {n} {pts[n].tolist()} is outside the scan {scan.name} of shape {tuple(scan.file_shape)}")
    return pts


def oriented_clicks(file_points: np.ndarray, scan: Scan) -> np.ndarray:
    """Six voxel indices of the scan file -> those of the oriented grid, paired by axis (as ``read_points``)."""
    world = voxel_to_world(file_points, scan.file_affine, "LPS")
    voxel = world_to_voxel(world, scan.volume.affine, "LPS")
    return check_points(arrange_clicks(np.rint(voxel), voxel_spacing(np.asarray(scan.volume.affine, dtype=np.float64))),
                        scan.volume.shape)


def file_clicks(oriented: np.ndarray, scan: Scan) -> np.ndarray:
    """Oriented voxel indices -> voxel indices of the scan file."""
    world = voxel_to_world(oriented, scan.volume.affine, "RAS")
    return np.rint(world_to_voxel(world, scan.file_affine, "RAS")).astype(np.int64)


@dataclass
class Result:
    """One inference: the mask on the scan file's grid, and what the client is told."""

    mask: np.ndarray          # uint8, the scan file's voxel order
    affine: np.ndarray        # the scan file's affine
    params: dict
    mask_oriented: np.ndarray | None = None


def pseudo_label_config(modality: str):
    """The settings ``extremefast pseudo-label`` uses on a collection of ``modality``."""
    config = get_preset("default")  # its crop is the defaults table's, as pseudo-label's
    return config.with_(window=window_for_modality(config.window, modality))


class Walker:
    """``extreme_points_walker``: the random-walker pseudo label of six clicks."""

    name = WALKER
    description = "Random-walker pseudo label from six extreme-point clicks (no training needed)"

    def __init__(self, modality: str = "CT"):
        self.config = pseudo_label_config(modality)

    def probability(self, scan: Scan, points: np.ndarray) -> np.ndarray:
        pl = pseudo_label_from_points(scan.volume.array, scan.volume.spacing, points, self.config)
        return pl.in_image_space().astype(np.float32)

    def warm(self) -> float:
        """Compile the kernels on a tiny scan (seconds taken). Its crop of 64^3 has more unknowns
        than the walker solves exactly (2**12), so the iterative solve's kernels are the ones
        compiled."""
        t = time.perf_counter()
        shape = (40, 40, 40)
        image = np.full(shape, -100.0, dtype=np.float32)
        image[12:28, 10:30, 14:26] = 60.0
        pts = np.array([[12, 20, 20], [27, 20, 20], [20, 10, 20], [20, 29, 20], [20, 20, 14], [20, 20, 25]])
        with _COMPUTE:
            pseudo_label_from_points(image, (1.0, 1.0, 1.0), pts, self.config.with_(crop_size=(64, 64, 64)))
        return time.perf_counter() - t


class TrainedModel:
    """``extreme_points_model``: a network the server trained, with the walker (``predict --with-walker``)."""

    name = MODEL
    description = "The network trained on this collection's clicks, averaged with the random walker"

    def __init__(self, checkpoint, run_id: str, device: str = "cpu"):
        from ..predict import Predictor

        self.predictor = Predictor.from_checkpoint(checkpoint, device)
        self.run_id = run_id
        self.checkpoint = checkpoint

    def probability(self, scan: Scan, points: np.ndarray) -> np.ndarray:
        return self.predictor.predict(scan.volume.array, points, spacing=scan.volume.spacing, with_walker=True)


def infer(model, scan: Scan, raw_points, labels: dict) -> Result:
    """Run ``model`` on ``scan`` from the clicks as sent; fewer than six give an empty mask and a message."""
    t0 = time.perf_counter()
    pts = parse_points(raw_points)
    n = len(pts)
    params = {"model": model.name, "label_names": dict(labels), "points": n, "needed": NEEDED, "seconds": {}}
    if n > NEEDED:
        raise InputError(f"needs exactly six extreme points, got {n}")
    file_pts = check_inside(pts, scan)
    if n < NEEDED:
        missing = NEEDED - n
        params.update(complete=False, clicks=None, voxels=0, volume_ml=0.0,
                      message=f"{n} of {NEEDED} extreme points: place {missing} more")
        empty = np.zeros(scan.file_shape, dtype=np.uint8)
        return Result(empty, scan.file_affine, params)
    oriented = oriented_clicks(file_pts, scan)
    t1 = time.perf_counter()
    with _COMPUTE:
        t_lock = time.perf_counter()
        prob = model.probability(scan, oriented)
    t2 = time.perf_counter()
    mask_oriented = prob.astype(np.float32) >= 0.5
    mask = np.ascontiguousarray(scan.to_file_grid(mask_oriented)).astype(np.uint8)
    voxels = int(mask.sum())
    params.update(complete=True, clicks=file_pts.tolist(), voxels=voxels,
                  volume_ml=voxels * float(np.prod(scan.volume.spacing)) / 1000.0,
                  message=f"mask from {NEEDED} extreme points" if voxels else
                  f"the {NEEDED} extreme points gave an empty mask; check that they lie on the organ's edge")
    params["seconds"].update(prepare=t1 - t0, wait=t_lock - t1, infer=t2 - t_lock)
    return Result(mask, scan.file_affine, params, mask_oriented)


def unknown_model(name: str, available) -> NotFound:
    if name == MODEL:
        return NotFound(f"{MODEL} is not available yet: no training run has finished (POST /train/)")
    return NotFound(f"unknown model {name!r}; available: {', '.join(available)}")
