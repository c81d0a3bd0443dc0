"""Geodesic scribbles: shortest paths on the gradient-magnitude cost (paper eq. 1).

The path between the two extreme points of each axis is found with Dijkstra's algorithm
on the 26-neighbour grid. An edge costs its length in mm times the mean cost of its two
voxels; a small floor on the cost makes zero-gradient plateaus resolve to the shortest
Euclidean route instead of an arbitrary one. The search is compiled with Numba (typed
binary heap, early exit when the target is settled); ``geodesic_ref`` holds a plain
scipy.sparse.csgraph reference of the same graph.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; kept importable without it
    numba = None

COST_FLOOR = 1e-2  # relative to the mean gradient magnitude


def gradient_cost(image, spacing=(1.0, 1.0, 1.0), smooth_sigma: float = 0.0) -> np.ndarray:
    """Per-voxel cost D = |grad I| (eq. 1) plus a floor of COST_FLOOR x its mean.

    ``smooth_sigma`` (voxels) optionally smooths the image first, which makes the path
    follow organ interiors instead of noise.
    """
    image = np.asarray(image, dtype=np.float32)
    if smooth_sigma > 0:
        image = ndi.gaussian_filter(image, smooth_sigma)
    grads = np.gradient(image, *[float(s) for s in spacing])
    mag = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grads))
    mean = float(mag.mean())
    floor = COST_FLOOR * mean if mean > 0 else 1.0
    return (mag + floor).astype(np.float64)


def neighbour_offsets(spacing):
    """The 26 neighbour offsets (26, 3) and their lengths in mm."""
    offs = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                     if (a, b, c) != (0, 0, 0)], dtype=np.int64)
    lengths = np.sqrt(((offs * np.asarray(spacing, dtype=np.float64)) ** 2).sum(axis=1))
    return offs, lengths


def shortest_path(cost, source, target, spacing=(1.0, 1.0, 1.0), *, bidirectional: bool = True) -> tuple[np.ndarray, float]:
    """Voxels (n, 3) of the cheapest 26-connected path from ``source`` to ``target`` and its cost.

    ``bidirectional`` searches from both ends at once (the same optimal cost; about a
    quarter of the voxels explored on a uniform cost).
    """
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.ndim != 3:
        raise InputError(f"cost must be 3D, got shape {cost.shape}")
    if not np.all(np.isfinite(cost)) or cost.min() < 0:
        raise InputError("cost must be finite and >= 0")
    shape = np.array(cost.shape, dtype=np.int64)
    src = np.asarray(source, dtype=np.int64)
    dst = np.asarray(target, dtype=np.int64)
    for name, p in (("source", src), ("target", dst)):
        if p.shape != (3,) or np.any(p < 0) or np.any(p >= shape):
            raise InputError(f"{name} {p.tolist()} is outside the volume of shape {tuple(shape)}")
    if numba is None:
        from .geodesic_ref import shortest_path_ref

        return shortest_path_ref(cost, source, target, spacing)
    offs, lengths = neighbour_offsets(spacing)
    padded = np.pad(cost, 1, constant_values=np.inf)
    pshape = padded.shape
    deltas = (offs[:, 0] * pshape[1] + offs[:, 1]) * pshape[2] + offs[:, 2]
    path_flat, total = _dijkstra_padded(padded.ravel(), deltas, lengths,
                                        int(np.ravel_multi_index(src + 1, pshape)),
                                        int(np.ravel_multi_index(dst + 1, pshape)), bool(bidirectional))
    path = np.stack(np.unravel_index(path_flat, pshape), axis=1) - 1
    return path, float(total)


def geodesic_scribbles(cost, points, spacing=(1.0, 1.0, 1.0), margin: int | None = 2) -> np.ndarray:
    """Boolean scribble mask: the three paths joining points (0,1), (2,3) and (4,5).

    The organ lies inside the bounding box of its extreme points, so the search is
    confined to that box grown by ``margin`` voxels (None searches the whole volume);
    this cuts the explored volume several-fold in a padded crop.
    """
    points = np.rint(np.asarray(points)).astype(np.int64)
    points = np.clip(points, 0, np.asarray(cost.shape) - 1)
    if margin is None:
        lo, hi = np.zeros(3, dtype=np.int64), np.asarray(cost.shape)
    else:
        lo = np.maximum(points.min(axis=0) - margin, 0)
        hi = np.minimum(points.max(axis=0) + 1 + margin, np.asarray(cost.shape))
    sub = np.ascontiguousarray(cost[tuple(slice(a, b) for a, b in zip(lo, hi))])
    scribble = np.zeros(cost.shape, dtype=bool)
    # the compiled search releases the GIL, so the three paths run on separate cores
    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = pool.map(lambda a: shortest_path(sub, points[2 * a] - lo, points[2 * a + 1] - lo, spacing)[0],
                         range(3))
        for path in paths:
            scribble[tuple((path + lo).T)] = True
    return scribble


if numba is not None:

    @numba.njit(cache=True, nogil=True, inline="always")
    def _heap_push(keys, vals, size, key, val):
        """Push onto a 4-ary min-heap (moving a hole up instead of swapping)."""
        i = size
        while i > 0:
            parent = (i - 1) >> 2
            if keys[parent] <= key:
                break
            keys[i] = keys[parent]
            vals[i] = vals[parent]
            i = parent
        keys[i] = key
        vals[i] = val
        return size + 1

    @numba.njit(cache=True, nogil=True, inline="always")
    def _heap_pop(keys, vals, size):
        """Pop the minimum of the 4-ary heap; returns (key, value, new size)."""
        key = keys[0]
        val = vals[0]
        size -= 1
        last_key = keys[size]
        last_val = vals[size]
        i = 0
        while True:
            first = 4 * i + 1
            if first >= size:
                break
            best = first
            best_key = keys[first]
            end = min(first + 4, size)
            for c in range(first + 1, end):
                if keys[c] < best_key:
                    best = c
                    best_key = keys[c]
            if last_key <= best_key:
                break
            keys[i] = best_key
            vals[i] = vals[best]
            i = best
        keys[i] = last_key
        vals[i] = last_val
        return key, val, size

    @numba.njit(cache=True, nogil=True)
    def _grow(keys, vals, size):
        k2 = np.empty(2 * keys.shape[0], dtype=np.float64)
        v2 = np.empty(2 * keys.shape[0], dtype=np.int64)
        k2[:size] = keys[:size]
        v2[:size] = vals[:size]
        return k2, v2

    @numba.njit(cache=True, nogil=True, inline="always")
    def _expand(cost, deltas, lengths, u, d, dist, prev, done, keys, vals, size, dist_other, done_other, best,
                meet):
        """Relax the edges of node u for one search side; track the best meeting node (an edge
        into a node the other side has settled, as in Goldberg's bidirectional Dijkstra)."""
        cu = cost[u]
        for m in range(deltas.shape[0]):
            v = u + deltas[m]
            cv = cost[v]
            if cv == np.inf or done[v]:
                continue
            nd = d + lengths[m] * 0.5 * (cu + cv)
            if nd < dist[v]:
                dist[v] = nd
                prev[v] = u
                if size == keys.shape[0]:
                    keys, vals = _grow(keys, vals, size)
                size = _heap_push(keys, vals, size, nd, v)
                if done_other[v]:
                    total = nd + dist_other[v]
                    if total < best:
                        best = total
                        meet = v
        return keys, vals, size, best, meet

    @numba.njit(cache=True, nogil=True)
    def _dijkstra_padded(cost, deltas, lengths, src, dst, bidirectional):
        """Shortest path on a grid padded with an inf-cost border (no bounds tests).

        With ``bidirectional``, searches from src (side a) and dst (side b) alternate,
        each step expanding the side with the lower frontier, and stop once the two
        frontier keys add up to at least the best meeting cost found, which is then
        optimal. Returns (flat path from src to dst, cost).
        """
        n = cost.shape[0]
        dist_a = np.full(n, np.inf)
        dist_b = np.full(n if bidirectional else 1, np.inf)
        prev_a = np.full(n, -1, dtype=np.int32)
        prev_b = np.full(n if bidirectional else 1, -1, dtype=np.int32)
        done_a = np.zeros(n, dtype=np.bool_)
        done_b = np.zeros(n, dtype=np.bool_)  # stays all False when unidirectional
        cap = max(4096, n // 8)
        keys_a = np.empty(cap, dtype=np.float64)
        vals_a = np.empty(cap, dtype=np.int64)
        keys_b = np.empty(cap if bidirectional else 1, dtype=np.float64)
        vals_b = np.empty(cap if bidirectional else 1, dtype=np.int64)
        dist_a[src] = 0.0
        n_a = _heap_push(keys_a, vals_a, 0, 0.0, src)
        n_b = 0
        if bidirectional:
            dist_b[dst] = 0.0
            n_b = _heap_push(keys_b, vals_b, 0, 0.0, dst)
        best = np.inf
        meet = -1
        if src == dst:
            n_a = 0
            n_b = 0
            best = 0.0
            meet = src
        while n_a > 0 or n_b > 0:
            if bidirectional and n_a > 0 and n_b > 0 and keys_a[0] + keys_b[0] >= best:
                break
            if n_b == 0 or (n_a > 0 and keys_a[0] <= keys_b[0]):
                d, u, n_a = _heap_pop(keys_a, vals_a, n_a)
                if done_a[u]:
                    continue
                done_a[u] = True
                if not bidirectional and u == dst:
                    best = d
                    meet = dst
                    break
                keys_a, vals_a, n_a, best, meet = _expand(cost, deltas, lengths, u, d, dist_a, prev_a, done_a,
                                                          keys_a, vals_a, n_a, dist_b, done_b, best, meet)
            else:
                d, u, n_b = _heap_pop(keys_b, vals_b, n_b)
                if done_b[u]:
                    continue
                done_b[u] = True
                keys_b, vals_b, n_b, best, meet = _expand(cost, deltas, lengths, u, d, dist_b, prev_b, done_b,
                                                          keys_b, vals_b, n_b, dist_a, done_a, best, meet)
        # src -> meet along side a, then meet -> dst along side b
        count = 1
        w = meet
        while w != src:
            w = prev_a[w]
            count += 1
        w = meet
        while w != dst:
            w = prev_b[w]
            count += 1
        path = np.empty(count, dtype=np.int64)
        k = count_a = 1
        w = meet
        while w != src:
            w = prev_a[w]
            count_a += 1
        w = meet
        for k in range(count_a - 1, -1, -1):
            path[k] = w
            w = prev_a[w]
        k = count_a
        w = meet
        while w != dst:
            w = prev_b[w]
            path[k] = w
            k += 1
        return path, best
