"""Coarse correction of the random walker's solve: one unknown per strongly linked region.

On real CT at beta 4000 the edge weights ``exp(-beta g^2 / (10 std)) + 1e-10`` span ten
orders of magnitude, and regions joined to the rest of the crop only by weak edges carry
an error that the residual barely sees: the error is nearly constant over the region and
the weak edges that measure it are ~1e-7. Measured on the sarcoma crop STS_007 (default
preset, 553,518 unknowns): float64 Jacobi-CG stopped at a relative residual of 1e-4 had a
largest error of 0.99 and probabilities up to 1.10; at 1e-5, still 0.98. pyamg's
Ruge-Stueben and smoothed-aggregation CG disagreed by 0.82 on 68 voxels after 300
iterations; an exact solve of that region given its surroundings sided with neither
iterate but the one corrected here.

The coarse space holds the indicator vector of every connected component of the graph
of strong edges (``w > theta``). The Galerkin correction

    x <- x + P (P^T A P)^{-1} P^T (b - A x)

(P the voxel-to-component indicator matrix, the coarse system solved exactly by sparse
LU) makes the residual sum to zero over every component, which removes the part of the
error that is constant on them: the part the residual misses. It is the coarse level of
aggregation multigrid and of deflated CG (Nicolaides 1987, "Deflation of conjugate
gradients with applications to boundary value problems", SIAM J. Numer. Anal. 24(2)),
with aggregates chosen by strength of connection. On STS_007 it took the CG iterate at
1e-4 to a largest error of 0.048 and 0.061% of labels off the reference, in [0, 1] to 5e-4.

The coarse system ``A_c = P^T A P`` is assembled in the Laplacian form (``_kernels``):
its diagonal is each component's coupling to seeds plus the weights of the edges leaving
it, with no cancellation, so walled-off components keep their 1e-10 weights.

Fast path: union-find and the coarse entries as Numba loops over the 7-column stencil.
Reference: :func:`strong_components_plain` and :func:`coarse_matrix_plain` (SciPy's
``connected_components`` and the sparse product ``P^T A P``); the tests compare them.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernels import _ell_matvec_numba, laplacian_matvec_array

# Edges heavier than this join voxels into one coarse unknown (weights lie in (0, 1]).
# Measured on STS_007 default (CG at 1e-4, then one correction): theta 0.01 (9,017
# components) left a largest error of 0.15, 0.1 (23,235) 0.048, 0.3 (52,381) 0.024 with a
# coarse factorisation 4x as slow (0.97 s against 0.22 s in SciPy).
THETA = 0.1


class CoarseSpace:
    """The strong components of a :class:`~._laplacian.StencilMatrix` as a coarse space,
    with the coarse system factorised once (float64, on the host).

    ``correct(x, b)`` applies the Galerkin correction to an iterate of ``A x = b``;
    ``solve(b)`` is the coarse solution ``P A_c^{-1} P^T b`` (a first guess). Both work
    on the matrix's array module (numpy or CuPy) in float64.
    """

    def __init__(self, A, theta=THETA):
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        am = A.am
        self.A, self.am = A, am
        cols, vals, coupling = (np.ascontiguousarray(am.to_numpy(a)) for a in (A.cols, A.vals, A.coupling))
        comp, self.size = strong_components(cols, vals, theta)
        rows, cidx, data, diag = _coarse_entries(cols, vals, coupling, comp, self.size)
        Ac = sp.coo_matrix((data, (rows, cidx)), shape=(self.size, self.size)) + sp.diags(diag)
        # SuperLU raises RuntimeError on an exactly singular coarse system (a component
        # with no path to a seed, which the seed preprocessing removes beforehand)
        self._lu = spla.splu(Ac.tocsc())
        self.comp = am.xp.asarray(comp)

    def _coarse_solve(self, v):
        xp = self.am.xp
        restricted = self.am.to_numpy(xp.bincount(self.comp, weights=v, minlength=self.size))
        return xp.asarray(self._lu.solve(restricted))[self.comp]

    def solve(self, b):
        return self._coarse_solve(self.am.xp.asarray(b, dtype=np.float64))

    def correct(self, x, b):
        x = self.am.xp.asarray(x, dtype=np.float64)
        return x + self._coarse_solve(residual(self.A, x, b))


def residual(A, x, b):
    """``b - A x`` in float64 (Laplacian form) for a float32 or float64 stencil matrix:
    a Numba loop on the CPU, array operations elsewhere (:func:`residual_array`)."""
    am = A.am
    if am.device != "cpu":
        return residual_array(am.xp, A, x, b)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.empty_like(x)
    _ell_matvec_numba(A.cols, A.vals, A.coupling, x, y)  # float64 x and y: float64 throughout
    return np.asarray(b, dtype=np.float64) - y


def residual_array(xp, A, x, b):
    """:func:`residual` as array-module operations (CuPy on a GPU; numpy in the tests)."""
    return xp.asarray(b, dtype=np.float64) - laplacian_matvec_array(xp, A.cols, A.vals, A.coupling, x)


def strong_components(cols, vals, theta):
    """(component of each row, number of components): rows joined by edges of weight
    above ``theta``, numbered 0.. in order of each component's first row."""
    return _union_find(cols, vals, theta)


@numba.njit(cache=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@numba.njit(cache=True)
def _union_find(cols, vals, theta):
    n = cols.shape[1]
    parent = np.arange(n)
    for i in range(n):
        for j in (4, 5, 6):  # each edge once, from its lower-numbered end
            c = cols[j, i]
            if c >= 0 and -vals[j, i] > theta:
                a, b = _find(parent, i), _find(parent, c)
                if a != b:
                    if a < b:
                        parent[b] = a
                    else:
                        parent[a] = b
    comp = np.empty(n, dtype=np.int64)
    number = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        root = _find(parent, i)
        if number[root] < 0:
            number[root] = count
            count += 1
        comp[i] = number[root]
    return comp, count


@numba.njit(cache=True)
def _coarse_entries(cols, vals, coupling, comp, size):
    """COO off-diagonal entries of P^T A P (each edge between two components from both
    ends) and its diagonal: coupling to seeds plus the weights leaving each component."""
    n = cols.shape[1]
    count = 0
    for i in range(n):
        for j in (0, 1, 2, 4, 5, 6):
            c = cols[j, i]
            if c >= 0 and comp[c] != comp[i]:
                count += 1
    rows = np.empty(count, dtype=np.int64)
    cidx = np.empty(count, dtype=np.int64)
    data = np.empty(count, dtype=np.float64)
    diag = np.zeros(size, dtype=np.float64)
    k = 0
    for i in range(n):
        ci = comp[i]
        diag[ci] += np.float64(coupling[i])
        for j in (0, 1, 2, 4, 5, 6):
            c = cols[j, i]
            if c >= 0 and comp[c] != ci:
                w = -np.float64(vals[j, i])
                diag[ci] += w
                rows[k] = ci
                cidx[k] = comp[c]
                data[k] = -w
                k += 1
    return rows, cidx, data, diag


def strong_components_plain(A, theta):
    """:func:`strong_components` by SciPy's ``connected_components`` (the reference),
    renumbered in order of first row."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    csr = A.tocsr().astype(np.float64)
    n = csr.shape[0]
    strong = sp.csr_matrix((-csr.data > theta, csr.indices, csr.indptr), shape=csr.shape)
    strong.setdiag(False)
    strong.eliminate_zeros()
    _, lab = connected_components(strong, directed=False)
    first = np.full(lab.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, lab, np.arange(n))
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    return renumber[lab], int(order.size)


def coarse_matrix_plain(A, comp, size):
    """``P^T A P`` by sparse products in float64 (the reference of the coarse assembly),
    with ``A`` the matrix the Laplacian form represents: off-diagonals ``-w_ij`` and
    diagonal ``s_i + sum_j w_ij`` summed in float64 (not the stored float32 diagonal)."""
    import scipy.sparse as sp

    n = A.shape[0]
    csr = A.tocsr().astype(np.float64).tolil()
    csr.setdiag(0)
    off = csr.tocsr()
    off.eliminate_zeros()
    laplacian = off + sp.diags(np.asarray(A.coupling, dtype=np.float64) - np.asarray(off.sum(axis=1)).ravel())
    P = sp.csr_matrix((np.ones(n), (np.arange(n), comp)), shape=(n, size))
    return (P.T @ laplacian @ P).toarray()
