"""Overlap and distance metrics for evaluation."""
from __future__ import annotations

import numpy as np


def dice(a, b) -> float:
    """Dice of two binary masks (probabilities are thresholded at 0.5); 1.0 when both are empty."""
    a = np.asarray(a)
    b = np.asarray(b)
    a = a >= 0.5 if a.dtype.kind == "f" else a.astype(bool)
    b = b >= 0.5 if b.dtype.kind == "f" else b.astype(bool)
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
    return f"{s['mean']:.3f}±{s['std']:.3f} ({s['median']:.3f})"
