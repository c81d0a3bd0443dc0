"""Overlap and distance metrics for evaluation."""
from __future__ import annotations

import numpy as np


def dice(a, b) -> float:
    """Dice of two binary masks (probabilities are thresholded at 0.5); 1.0 when both are empty."""
    a, b = _binary(a), _binary(b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def summarise(values) -> dict:
    """mean, std and median of a list of numbers (NaN-free)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)), "n": int(v.size)}


def format_summary(s: dict) -> str:
    """``mean±std (median)``, or "no masks" for a summary over nothing."""
    if not s.get("n"):
        return "no masks"
    return f"{s['mean']:.3f}±{s['std']:.3f} ({s['median']:.3f})"


def _binary(a) -> np.ndarray:
    a = np.asarray(a)
    return a >= 0.5 if a.dtype.kind == "f" else a.astype(bool)


def _surface(mask) -> np.ndarray:
    from scipy import ndimage as ndi

    return mask & ~ndi.binary_erosion(mask, structure=ndi.generate_binary_structure(3, 1), border_value=0)


def hausdorff95(a, b, spacing=(1.0, 1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance in mm between two masks' surfaces.

    The larger of the two directed 95th percentiles (surface voxels of one mask to the
    nearest surface voxel of the other), the convention of MONAI's
    ``compute_hausdorff_distance(percentile=95)``. NaN when either mask is empty.
    """
    from scipy import ndimage as ndi

    a, b = _binary(a), _binary(b)
    if not a.any() or not b.any():
        return float("nan")
    sa, sb = _surface(a), _surface(b)
    to_b = ndi.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndi.distance_transform_edt(~sa, sampling=spacing)
    return float(max(np.percentile(to_b[sa], 95), np.percentile(to_a[sb], 95)))


def volume_difference(pred, truth, spacing=(1.0, 1.0, 1.0)) -> tuple[float, float]:
    """(predicted - true volume in ml, the same relative to the true volume in %)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    vp = float(_binary(pred).sum()) * voxel_ml
    vt = float(_binary(truth).sum()) * voxel_ml
    return vp - vt, (100.0 * (vp - vt) / vt if vt > 0 else float("nan"))
