"""Exact squared Euclidean distance transform of a 3D mask, compiled (Numba, CPU).

The squared distance from every voxel to the nearest background (False) voxel, with a
voxel size per axis, by three passes of the 1D lower envelope of parabolas (Felzenszwalb
and Huttenlocher, "Distance Transforms of Sampled Functions", Theory of Computing 8, 2012):
linear in the number of voxels, lines in parallel. Seeds and uncertainty bands only compare
distances with a radius, so the squares are enough. ``scipy.ndimage.distance_transform_edt``
is the plain reference the tests compare against (its square); with no background voxel
at all the distance here is inf everywhere.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None


def squared_distance_to_background(mask, sampling=None) -> np.ndarray:
    """float64 array of mask's shape: squared distance (in units of ``sampling``) from each
    voxel to the nearest voxel where ``mask`` is False (0 on those voxels)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not 1 <= mask.ndim <= 3:
        raise ValueError(f"mask must be 1D, 2D or 3D, got shape {mask.shape}")
    shape = mask.shape
    w2 = np.ones(mask.ndim) if sampling is None else \
        np.broadcast_to(np.asarray(sampling, dtype=np.float64), (mask.ndim,)) ** 2
    w2 = np.r_[np.ones(3 - mask.ndim), w2]  # lower ranks as 3D with leading singleton axes
    mask = mask.reshape((1,) * (3 - mask.ndim) + shape)
    if numba is None:  # pragma: no cover
        from scipy import ndimage as ndi

        if not (~mask).any():
            return np.full(shape, np.inf)
        return (ndi.distance_transform_edt(mask, sampling=np.sqrt(w2)) ** 2).reshape(shape)
    out = np.empty(mask.shape, dtype=np.float64)
    _edt3(mask, float(w2[0]), float(w2[1]), float(w2[2]), out)
    return out.reshape(shape)


if numba is not None:

    @numba.njit(cache=True, inline="always")
    def _envelope(f, n, w2, d, v, z):
        """d[:n] = min_q f[q] + w2 (p - q)^2 over q, for f holding 0 or inf or earlier
        squared distances (inf where no site)."""
        k = -1
        for q in range(n):
            if f[q] == np.inf:
                continue
            if k < 0:
                k = 0
                v[0] = q
                z[0] = -np.inf
                z[1] = np.inf
                continue
            while True:  # drop the parabolas that q hides (z[0] = -inf stops this at k = 0)
                r = v[k]
                s = ((f[q] + w2 * q * q) - (f[r] + w2 * r * r)) / (2.0 * w2 * (q - r))
                if s <= z[k]:
                    k -= 1
                    continue
                break
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = np.inf
        if k < 0:
            for p in range(n):
                d[p] = np.inf
            return
        j = 0
        for p in range(n):
            while z[j + 1] < p:
                j += 1
            dq = p - v[j]
            d[p] = f[v[j]] + w2 * dq * dq

    @numba.njit(cache=True, inline="always")
    def _transform_line(line, w2, d, v, z):
        """line (a strided view) <- its 1D transform, through the work arrays d, v, z."""
        n = line.shape[0]
        _envelope(line, n, w2, d, v, z)
        for p in range(n):
            line[p] = d[p]

    @numba.njit(parallel=True, cache=True)
    def _edt3(mask, w0, w1, w2, out):
        n0, n1, n2 = mask.shape
        m = max(n0, n1, n2)
        # along axis 2, then axis 1 (planes in parallel)
        for i in numba.prange(n0):
            d, v, z = np.empty(m), np.empty(m, dtype=np.int64), np.empty(m + 1)
            for j in range(n1):
                for k in range(n2):
                    out[i, j, k] = np.inf if mask[i, j, k] else 0.0
                _transform_line(out[i, j, :], w2, d, v, z)
            for k in range(n2):
                _transform_line(out[i, :, k], w1, d, v, z)
        # along axis 0 (columns in parallel)
        for j in numba.prange(n1):
            d, v, z = np.empty(m), np.empty(m, dtype=np.int64), np.empty(m + 1)
            for k in range(n2):
                _transform_line(out[:, j, k], w0, d, v, z)
