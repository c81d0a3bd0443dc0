"""Seed preprocessing and output layout of the random walker (label values, seed codes,
pruning of unreachable voxels, full probabilities), compiled where it is a full-grid pass,
with the numpy forms beside as the tests' references."""
from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

def preprocess(labels):
    """Seed codes (1..K for the positive values in increasing order, 0 unknown, -1
    inactive), K, the active mask and the isolated seeds; or a string saying why there is
    nothing to solve ("no unknown", "all isolated").

    Unknown voxels that no seed can reach through active voxels become inactive
    ("orphans"), and so do seeds with no unknown voxel to reach ("isolated seeds"), as
    scikit-image prunes its graph. Unlike scikit-image, the pruned graph keeps every
    node's position (scikit-image renumbers the remaining edges while keeping the full
    node list when a seed has no active neighbour, which misaligns its system with the
    seeds; this package solves the system the graph defines).
    """
    values = label_values(labels)
    if values.size == 0 or values[-1] <= 0:
        raise InputError("No seeds provided in label image: give at least one positive label value")
    if not np.any(values == 0):
        return "no unknown"
    unknown = labels == 0
    positive = labels > 0
    active = labels >= 0
    if values[0] < 0:
        isolated_seeds = positive & ~ndi.binary_propagation(unknown, mask=active)
    else:
        # with no inactive voxel the grid is connected: every seed reaches an unknown voxel
        isolated_seeds = np.zeros(labels.shape, dtype=bool)
    seeds = seed_codes(labels, values)
    positive_values = values[values > 0]
    if values[0] < 0 or np.any(isolated_seeds):
        reachable_from_seeds = ndi.binary_propagation(positive & ~isolated_seeds, mask=active)
        orphans = unknown & ~reachable_from_seeds
        if np.all(orphans[unknown]):
            return "all isolated"
        active = active & ~orphans & ~isolated_seeds
        seeds[orphans] = -1
    seeds[labels < 0] = -1
    return seeds, len(positive_values), active, isolated_seeds


def output_codes(labels, values):
    """The label map scikit-image returns before the solve fills it: positive values
    renumbered 1..K, negative values renumbered -M..-1 in increasing order, 0 kept."""
    out = np.zeros(labels.shape, dtype=np.int64)
    positive, negative = labels > 0, labels < 0
    pos_values, neg_values = values[values > 0], values[values < 0]
    out[positive] = np.searchsorted(pos_values, labels[positive]) + 1
    out[negative] = np.searchsorted(neg_values, labels[negative]) - neg_values.size
    return out


def label_values(labels):
    """The distinct values of a label array, sorted (for integers with a small range, as
    seed arrays have, np.unique without the sort)."""
    if labels.dtype.kind == "f":
        return np.unique(labels)
    lo, hi = int(labels.min()), int(labels.max())
    if hi - lo < 2**16:
        present = np.zeros(hi - lo + 1, dtype=np.bool_)
        flat = _flat_integers(labels)
        _mark_present(flat, lo, present)
        return (np.flatnonzero(present) + lo).astype(labels.dtype)
    return np.unique(labels)


def _flat_integers(labels):
    flat = labels.ravel()
    return flat.view(np.uint8) if flat.dtype == np.bool_ else flat


def seed_codes(labels, values):
    """int32 seed codes of ``labels`` given its sorted distinct ``values``: positive values
    -> 1..K in increasing order, 0 -> 0, negative values -> -1. One compiled pass through a
    lookup table when the values' range is small; :func:`seed_codes_plain` otherwise (and
    as the reference the tests compare against)."""
    lo, hi = int(values[0]), int(values[-1])
    if values.dtype.kind == "f" or hi - lo >= 2**16:
        return seed_codes_plain(labels, values)
    table = np.zeros(hi - lo + 1, dtype=np.int32)
    positive = values[values > 0]
    table[(positive.astype(np.int64) - lo)] = np.arange(1, positive.size + 1, dtype=np.int32)
    table[(values[values < 0].astype(np.int64) - lo)] = -1
    out = np.empty(labels.shape, dtype=np.int32)
    _lookup(_flat_integers(labels), lo, table, out.ravel())
    return out


def seed_codes_plain(labels, values):
    out = np.zeros(labels.shape, dtype=np.int32)
    positive = labels > 0
    out[positive] = np.searchsorted(values[values > 0], labels[positive]) + 1
    out[labels < 0] = -1
    return out


def full_probabilities(seeds, unknown, X):
    """The (nlabels, *grid) probabilities from the unknowns' rows X (n_u, nlabels), rows in
    grid order: X on unknown voxels, 1 for a seed's own label, 0 elsewhere. One compiled
    pass (planes in parallel); :func:`full_probabilities_plain` is the reference."""
    if seeds.ndim != 3:
        return full_probabilities_plain(seeds, unknown, X)
    starts = np.zeros(seeds.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(unknown.reshape(seeds.shape[0], -1), axis=1), out=starts[1:])
    out = np.empty((X.shape[1],) + seeds.shape, dtype=np.float64)
    _fill_probabilities(seeds, unknown, starts, np.ascontiguousarray(X, dtype=np.float64), out)
    return out


def full_probabilities_plain(seeds, unknown, X):
    out = np.zeros((X.shape[1],) + seeds.shape, dtype=np.float64)
    for k in range(X.shape[1]):
        out[k][unknown] = X[:, k]
        out[k][seeds == k + 1] = 1.0
    return out



@numba.njit(parallel=True, cache=True)
def _mark_present(flat, lo, present):
    """present[v - lo] = True for every value v (concurrent writes all store True)."""
    for i in numba.prange(flat.shape[0]):
        present[np.int64(flat[i]) - lo] = True

@numba.njit(parallel=True, cache=True)
def _lookup(flat, lo, table, out):
    for i in numba.prange(flat.shape[0]):
        out[i] = table[np.int64(flat[i]) - lo]

@numba.njit(parallel=True, cache=True)
def _fill_probabilities(seeds, unknown, starts, X, out):
    nlabels = X.shape[1]
    for i in numba.prange(seeds.shape[0]):
        r = starts[i]
        for j in range(seeds.shape[1]):
            for m in range(seeds.shape[2]):
                if unknown[i, j, m]:
                    for k in range(nlabels):
                        out[k, i, j, m] = X[r, k]
                    r += 1
                else:
                    s = seeds[i, j, m]
                    for k in range(nlabels):
                        out[k, i, j, m] = 1.0 if s == k + 1 else 0.0
