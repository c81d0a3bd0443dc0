"""Geometric multigrid preconditioner for the random walker's system, in Numba (CPU).

Hierarchy: unknowns are aggregated in 2x2x2 blocks of the grid and the coarse operators are
Galerkin products ``A_c = P^T A P`` with the piecewise-constant prolongation ``P``. For a
6-neighbour graph Laplacian plus a diagonal this product is again a 6-neighbour operator on
the coarse grid, which is why the construction stays cheap and exact:

* a coarse edge weight is the sum of the fine edge weights crossing between two blocks;
* the coarse seed coupling (the diagonal part from edges to seeds) is the block's sum.

Each level stores the seed coupling and forward edge weights, and the diagonal is their
sum, so no entry comes from a subtraction (edge weights span 1e-10 to 1 in float32).
Re-discretised coarse grids would not be robust for such weights (the issue that motivated
Galerkin operators here; see also Wesseling, *An Introduction to Multigrid Methods*, 1992).

Smoother: red-black Gauss-Seidel, red then black before the coarse correction and black
then red after it, so the V-cycle is a symmetric operator and a valid CG preconditioner.
Levels with no unknown at a node keep an identity row there. The coarsest level (at most
``_COARSEST`` nodes) is solved by a dense Cholesky factorisation, compiled here rather
than called from LAPACK: a BLAS call leaves OpenBLAS threads spinning, which slows the
compiled kernels that follow (see ``_kernels._dot``).

The finest level works on the unknowns' vector (in :class:`CompactStencil` form); coarser
levels on full grids. The plain reference is ``_multigrid_ref.py`` (scipy.sparse).
"""
from __future__ import annotations

import numpy as np

from ._kernels import (CompactStencil, _compact_offdiag, _compact_row, _direction, _dot, _matvec_dot, _update, cg_start,
                       numba)

_COARSEST = 100  # nodes: a level this small is solved directly (4^3 on 128^3 crops)


if numba is not None:

    @numba.njit(parallel=True, cache=True)
    def _grid_galerkin(S, W0, W1, W2, Sc, W0c, W1c, W2c):
        """Coarse seed coupling and forward weights of 2x2x2 aggregation (P^T A P)."""
        n0, n1, n2 = S.shape
        m0, m1, m2 = Sc.shape
        for I in numba.prange(m0):
            for J in range(m1):
                for K in range(m2):
                    s = 0.0
                    w0 = 0.0
                    w1 = 0.0
                    w2 = 0.0
                    for i in range(2 * I, min(2 * I + 2, n0)):
                        for j in range(2 * J, min(2 * J + 2, n1)):
                            for k in range(2 * K, min(2 * K + 2, n2)):
                                s += S[i, j, k]
                                if i == 2 * I + 1:
                                    w0 += W0[i, j, k]
                                if j == 2 * J + 1:
                                    w1 += W1[i, j, k]
                                if k == 2 * K + 1:
                                    w2 += W2[i, j, k]
                    Sc[I, J, K] = s
                    W0c[I, J, K] = w0
                    W1c[I, J, K] = w1
                    W2c[I, J, K] = w2

    @numba.njit(parallel=True, cache=True)
    def _grid_diagonal(S, W0, W1, W2, diag, present):
        """diag = S + incident weights where a node holds unknowns; 1 (identity) elsewhere."""
        n0, n1, n2 = S.shape
        for i in numba.prange(n0):
            for j in range(n1):
                for k in range(n2):
                    if present[i, j, k]:
                        d = S[i, j, k] + W0[i, j, k] + W1[i, j, k] + W2[i, j, k]
                        if i > 0:
                            d += W0[i - 1, j, k]
                        if j > 0:
                            d += W1[i, j - 1, k]
                        if k > 0:
                            d += W2[i, j, k - 1]
                        diag[i, j, k] = d
                    else:
                        diag[i, j, k] = 1.0

    @numba.njit(cache=True, inline="always")
    def _grid_offdiag(W0, W1, W2, x, i, j, k):
        """sum_j w_ij x_j over the six neighbours of (i, j, k)."""
        n0, n1, n2 = x.shape
        acc = 0.0
        if i + 1 < n0:
            acc += W0[i, j, k] * x[i + 1, j, k]
        if i > 0:
            acc += W0[i - 1, j, k] * x[i - 1, j, k]
        if j + 1 < n1:
            acc += W1[i, j, k] * x[i, j + 1, k]
        if j > 0:
            acc += W1[i, j - 1, k] * x[i, j - 1, k]
        if k + 1 < n2:
            acc += W2[i, j, k] * x[i, j, k + 1]
        if k > 0:
            acc += W2[i, j, k - 1] * x[i, j, k - 1]
        return acc

    @numba.njit(parallel=True, cache=True)
    def _grid_gauss_seidel(diag, W0, W1, W2, b, x, color):
        """One half sweep: nodes with (i + j + k) % 2 == color solve their own row."""
        n0, n1, n2 = x.shape
        for i in numba.prange(n0):
            for j in range(n1):
                for k in range((i + j + color) % 2, n2, 2):
                    x[i, j, k] = (b[i, j, k] + _grid_offdiag(W0, W1, W2, x, i, j, k)) / diag[i, j, k]

    @numba.njit(parallel=True, cache=True)
    def _grid_residual(diag, W0, W1, W2, b, x, r):
        n0, n1, n2 = x.shape
        for i in numba.prange(n0):
            for j in range(n1):
                for k in range(n2):
                    r[i, j, k] = b[i, j, k] - diag[i, j, k] * x[i, j, k] + _grid_offdiag(W0, W1, W2, x, i, j, k)

    @numba.njit(parallel=True, cache=True)
    def _grid_restrict(r, rc):
        n0, n1, n2 = r.shape
        for I in numba.prange(rc.shape[0]):
            for J in range(rc.shape[1]):
                for K in range(rc.shape[2]):
                    s = 0.0
                    for i in range(2 * I, min(2 * I + 2, n0)):
                        for j in range(2 * J, min(2 * J + 2, n1)):
                            for k in range(2 * K, min(2 * K + 2, n2)):
                                s += r[i, j, k]
                    rc[I, J, K] = s

    @numba.njit(parallel=True, cache=True)
    def _grid_prolong_add(ec, x):
        n0, n1, n2 = x.shape
        for i in numba.prange(n0):
            for j in range(n1):
                for k in range(n2):
                    x[i, j, k] += ec[i // 2, j // 2, k // 2]

    # --- the finest level: the unknowns' vector --------------------------------------

    @numba.njit(parallel=True, cache=True)
    def _fine_gauss_seidel(W, D, b, x, color, c):
        n = W.shape[0]
        for i in numba.prange(n):
            if color[i] == c:
                x[i] = (b[i] + _compact_offdiag(W, D, x, i, n)) / W[i, 0]

    @numba.njit(parallel=True, cache=True)
    def _fine_residual_restrict(W, D, b, x, cidx, plane_start, flat):
        """flat[block(i)] = sum of (b - A x)_i over the unknowns i of each coarse block.

        Unknowns are in grid order, so each coarse axis-0 plane owns one contiguous range
        of them and the planes are summed in parallel without races."""
        n = W.shape[0]
        flat[:] = 0.0
        for plane in numba.prange(plane_start.shape[0] - 1):
            for i in range(plane_start[plane], plane_start[plane + 1]):
                flat[cidx[i]] += b[i] - _compact_row(W, D, x, i, n)

    @numba.njit(parallel=True, cache=True)
    def _fine_prolong_add(flat, cidx, x):
        for i in numba.prange(x.shape[0]):
            x[i] += flat[cidx[i]]

    @numba.njit(parallel=True, cache=True)
    def _fine_layout(u, n1, n2, c1, c2, color, cidx, odd):
        """Per unknown (grid flat index u): red/black colour, coarse block, odd coordinates."""
        for i in numba.prange(u.shape[0]):
            i0 = u[i] // (n1 * n2)
            rem = u[i] - i0 * n1 * n2
            i1 = rem // n2
            i2 = rem - i1 * n2
            color[i] = (i0 + i1 + i2) % 2
            cidx[i] = ((i0 // 2) * c1 + i1 // 2) * c2 + i2 // 2
            odd[i] = (i0 % 2) | ((i1 % 2) << 1) | ((i2 % 2) << 2)

    @numba.njit(parallel=True, cache=True)
    def _fine_galerkin(W, coupling, cidx, odd, plane_start, S, W0, W1, W2, present):
        """The first coarse level straight from the unknowns (flat coarse arrays, zeroed):
        block sums of the seed coupling, and forward weights leaving a block through its
        odd (upper) face. Parallel over coarse axis-0 planes, which own disjoint rows."""
        for plane in numba.prange(plane_start.shape[0] - 1):
            for i in range(plane_start[plane], plane_start[plane + 1]):
                c = cidx[i]
                present[c] = True
                S[c] += coupling[i]
                if odd[i] & 1:
                    W0[c] += W[i, 1]
                if odd[i] & 2:
                    W1[c] += W[i, 2]
                if odd[i] & 4:
                    W2[c] += W[i, 3]

    @numba.njit(parallel=True, cache=True)
    def _fine_first_half_sweep(W, b, x, color):
        """Red half sweep from x = 0: x = b / d on red rows, 0 on black rows."""
        for i in numba.prange(x.shape[0]):
            x[i] = b[i] / W[i, 0] if color[i] == 0 else 0.0


if numba is not None:

    @numba.njit(cache=True)
    def _cholesky(A):
        """In place: the lower triangle of A becomes L with A = L L^T (A SPD, small)."""
        n = A.shape[0]
        for j in range(n):
            d = A[j, j]
            for k in range(j):
                d -= A[j, k] * A[j, k]
            d = np.sqrt(d)
            A[j, j] = d
            for i in range(j + 1, n):
                s = A[i, j]
                for k in range(j):
                    s -= A[i, k] * A[j, k]
                A[i, j] = s / d

    @numba.njit(cache=True)
    def _cholesky_solve(L, b):
        """In place: b becomes (L L^T)^{-1} b."""
        n = L.shape[0]
        for i in range(n):
            s = b[i]
            for k in range(i):
                s -= L[i, k] * b[k]
            b[i] = s / L[i, i]
        for i in range(n - 1, -1, -1):
            s = b[i]
            for k in range(i + 1, n):
                s -= L[k, i] * b[k]
            b[i] = s / L[i, i]


def _coarsen(S, W0, W1, W2, present):
    """The Galerkin coarse level of grid arrays (seed coupling, forward weights, presence)."""
    shape = tuple((s + 1) // 2 for s in S.shape)
    arrays = [np.empty(shape, dtype=S.dtype) for _ in range(4)]
    _grid_galerkin(S, W0, W1, W2, *arrays)
    count = np.empty(shape, dtype=S.dtype)  # present nodes per block
    _grid_restrict(present.astype(S.dtype), count)
    return _GridLevel(*arrays, count > 0)


class _GridLevel:
    """One coarse level on a full grid, with its work vectors."""

    def __init__(self, S, W0, W1, W2, present):
        self.S, self.W0, self.W1, self.W2 = S, W0, W1, W2
        self.present = present
        self.diag = np.empty_like(S)
        _grid_diagonal(S, W0, W1, W2, self.diag, present)
        self.b = np.zeros_like(S)
        self.x = np.zeros_like(S)
        self.r = np.zeros_like(S)

    def coarsen(self):
        return _coarsen(self.S, self.W0, self.W1, self.W2, self.present)

    def dense(self):
        """The level's matrix as a dense float64 array (identity rows where no unknown)."""
        n = self.S.size
        shape = self.S.shape
        A = np.diag(self.diag.astype(np.float64).ravel())
        idx = np.arange(n).reshape(shape)
        for ax, w in enumerate((self.W0, self.W1, self.W2)):
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            src[ax] = slice(0, shape[ax] - 1)
            dst[ax] = slice(1, shape[ax])
            a, b = idx[tuple(src)].ravel(), idx[tuple(dst)].ravel()
            vals = w[tuple(src)].astype(np.float64).ravel()
            A[a, b] -= vals
            A[b, a] -= vals
        return A


class MultigridPreconditioner:
    """Symmetric V-cycle for the unknowns' system ``A`` (a :class:`StencilMatrix` carrying
    its grid layout: ``unknown`` mask and ``coupling`` to the seeds).

    The coarse-grid correction is scaled by ``over_correction``: piecewise-constant
    prolongation underestimates smooth errors, and scaling its correction is the usual
    remedy for unsmoothed aggregation (Braess, Computing 55, 1995). The same factor on
    every level keeps the cycle symmetric; 1.4 gave the fewest CG iterations on 128^3
    random-walker crops (1.0: 11, 1.4: 8, 1.7: 10, 2.0: 12).
    """

    def __init__(self, A, over_correction=1.4):
        self.omega = over_correction
        self.fine = CompactStencil(A)
        W = self.fine.W
        dtype = W.dtype
        shape = A.unknown.shape
        u = np.flatnonzero(A.unknown)
        n = u.size
        cshape = tuple((s + 1) // 2 for s in shape)
        self.color = np.empty(n, dtype=np.uint8)
        self.cidx = np.empty(n, dtype=np.int64)
        odd = np.empty(n, dtype=np.uint8)
        _fine_layout(u, shape[1], shape[2], cshape[1], cshape[2], self.color, self.cidx, odd)
        plane_rows = shape[1] * shape[2]
        self.plane_start = np.searchsorted(u, np.arange(0, 2 * cshape[0] + 1, 2) * plane_rows).astype(np.int64)
        coarse = [np.zeros(cshape, dtype=dtype) for _ in range(4)]
        present = np.zeros(cshape, dtype=np.bool_)
        _fine_galerkin(W, np.ascontiguousarray(A.coupling, dtype=dtype), self.cidx, odd, self.plane_start,
                       *(g.reshape(-1) for g in coarse), present.reshape(-1))
        self.levels = [_GridLevel(*coarse, present)]
        while self.levels[-1].S.size > _COARSEST and min(self.levels[-1].S.shape) > 2:
            self.levels.append(self.levels[-1].coarsen())
        self.coarse_factor = self.levels[-1].dense()
        _cholesky(self.coarse_factor)

    def __call__(self, r, out=None):
        """z = M^{-1} r: one V-cycle from a zero initial guess."""
        W, D = self.fine.W, self.fine.D
        x = np.empty_like(r) if out is None else out
        _fine_first_half_sweep(W, r, x, self.color)
        _fine_gauss_seidel(W, D, r, x, self.color, 1)
        _fine_residual_restrict(W, D, r, x, self.cidx, self.plane_start, self.levels[0].b.reshape(-1))
        self._cycle(0)
        _fine_prolong_add(self.levels[0].x.reshape(-1), self.cidx, x)
        _fine_gauss_seidel(W, D, r, x, self.color, 1)
        _fine_gauss_seidel(W, D, r, x, self.color, 0)
        return x

    def _cycle(self, k):
        """Leaves omega * (V-cycle of level k's b) in level k's x."""
        lv = self.levels[k]
        if k == len(self.levels) - 1:
            sol = lv.b.astype(np.float64).ravel()
            _cholesky_solve(self.coarse_factor, sol)
            lv.x[...] = self.omega * sol.reshape(lv.x.shape)
            return
        lv.x[...] = 0
        args = (lv.diag, lv.W0, lv.W1, lv.W2, lv.b, lv.x)
        _grid_gauss_seidel(*args, 0)
        _grid_gauss_seidel(*args, 1)
        _grid_residual(*args, lv.r)
        _grid_restrict(lv.r, self.levels[k + 1].b)
        self._cycle(k + 1)
        _grid_prolong_add(self.levels[k + 1].x, lv.x)
        _grid_gauss_seidel(*args, 1)
        _grid_gauss_seidel(*args, 0)
        lv.x *= self.omega


def multigrid_cg(A, b, x0=None, *, tol=1e-3, maxiter=None, M=None):
    """CG preconditioned by the geometric multigrid V-cycle; SciPy's convention
    (returns ``(x, info)``, info 0 on convergence). ``M`` reuses a built preconditioner."""
    maxiter = int(maxiter or 500)
    M = MultigridPreconditioner(A) if M is None else M
    dtype = A.vals.dtype
    x, r, threshold2, done = cg_start(A, b, x0, tol)
    if done:
        return x, 0
    z = M(r)
    p = z.copy()
    ap = np.empty_like(p)
    unit = np.ones(x.shape[0], dtype=dtype)  # _update's diagonal scaling, unused here
    rz = _dot(r, z)
    for it in range(1, maxiter + 1):
        pap = _matvec_dot(A.cols, A.vals, p, ap)  # the ELL mat-vec: measured faster
        alpha = rz / pap
        _, rr = _update(x, r, p, ap, unit, dtype.type(alpha), z)  # z is overwritten by M(r) below
        if rr <= threshold2:
            return x, 0
        M(r, out=z)
        rz_new = _dot(r, z)
        _direction(p, z, dtype.type(rz_new / rz))
        rz = rz_new
    return x, maxiter
