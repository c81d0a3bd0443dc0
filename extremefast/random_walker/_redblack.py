"""Red-black reduced Jacobi-CG for the random walker's system (Numba, CPU).

On the 6-neighbour grid every edge joins a "red" voxel (i + j + k even) to a "black" one,
so with the unknowns ordered red first the system reads

    [ D_r   -W ] [x_r]   [b_r]
    [ -W^T  D_b] [x_b] = [b_b]

with diagonal D_r, D_b. Eliminating the red unknowns leaves the Schur complement
``S = D_b - W^T D_r^{-1} W`` on the black ones (SPD, half the size), solved by
Jacobi-preconditioned CG; the red values follow exactly as ``D_r^{-1} (b_r + W x_b)``.
If ``J`` is the Jacobi iteration matrix of the full system with spectral radius rho, the
scaled full system has condition number (1 + rho) / (1 - rho) and the reduced one
1 / (1 - rho^2), about four times smaller near rho = 1: half the CG iterations, each costing
about one full mat-vec (two half passes) and vector work on half the unknowns. The
residual of the reduced system is the full system's residual once the red values are
recovered, so ``tol`` means what it means for scikit-image's solve.

The plain reference is :func:`extremefast.random_walker._solvers.cg` on the CSR form of the
full system; tests compare the two.
"""
from __future__ import annotations

import numpy as np

from ._kernels import _CHUNKS, _direction, _dot, _ordered_sum, _update, numba

if numba is not None:

    @numba.njit(cache=True)
    def _colour_rows(unknown, position, rows):
        """Unknowns in grid order: position[row] = its index within its colour; rows[:n_red]
        the red rows, rows[n_red:] the black ones. Returns n_red."""
        counts = np.zeros(2, dtype=np.int64)
        row = 0
        for i in range(unknown.shape[0]):
            for j in range(unknown.shape[1]):
                for k in range(unknown.shape[2]):
                    if unknown[i, j, k]:
                        colour = (i + j + k) % 2
                        position[row] = counts[colour]
                        rows[row] = colour  # for now; replaced below
                        counts[colour] += 1
                        row += 1
        colours = rows.copy()
        for row in range(colours.shape[0]):
            rows[position[row] + (counts[0] if colours[row] else 0)] = row
        return counts[0]

    @numba.njit(parallel=True, cache=True)
    def _split(cols, vals, position, rows, C, Wt, d):
        """ELL rows ``rows`` -> one colour's 6-column block; columns index the other
        colour's unknowns, weights are the positive edge weights (0 where no unknown
        neighbour)."""
        for q in numba.prange(rows.shape[0]):
            i = rows[q]
            d[q] = vals[3, i]
            s = 0
            for j in range(7):
                if j == 3:
                    continue
                c = cols[j, i]
                if c >= 0:
                    C[s, q] = position[c]
                    Wt[s, q] = -vals[j, i]
                else:
                    C[s, q] = 0
                    Wt[s, q] = 0.0
                s += 1

    @numba.njit(cache=True, inline="always")
    def _gather(C, Wt, x, i):
        acc = 0.0
        for s in range(6):
            acc += Wt[s, i] * x[C[s, i]]
        return acc

    @numba.njit(parallel=True, cache=True)
    def _red_solve(Rc, Rw, inv_Rd, b_r, x_b, out):
        """out = D_r^{-1} (b_r + W x_b) (b_r may be a zero-length array for b_r = 0)."""
        with_b = b_r.shape[0] > 0
        for i in numba.prange(out.shape[0]):
            acc = _gather(Rc, Rw, x_b, i)
            if with_b:
                acc += b_r[i]
            out[i] = acc * inv_Rd[i]

    @numba.njit(parallel=True, cache=True)
    def _black_apply_dot(Bc, Bw, Bd, t_r, p, sp):
        """sp = D_b p - W^T t_r (so S p when t_r = D_r^{-1} W p); returns p . sp in float64."""
        n = p.shape[0]
        partial = np.zeros(_CHUNKS)
        size = (n + _CHUNKS - 1) // _CHUNKS
        for ch in numba.prange(_CHUNKS):
            total = 0.0
            for i in range(ch * size, min(n, (ch + 1) * size)):
                v = Bd[i] * p[i] - _gather(Bc, Bw, t_r, i)
                sp[i] = v
                total += np.float64(p[i]) * v
            partial[ch] = total
        return _ordered_sum(partial)

    @numba.njit(parallel=True, cache=True)
    def _schur_diagonal(Bc, Bw, Bd, inv_Rd, out):
        """diag(S) = D_b - sum_r w^2 / D_r in float64, kept above 1e-6 D_b (S is SPD, so
        only rounding could push it lower)."""
        for i in numba.prange(out.shape[0]):
            d = np.float64(Bd[i])
            acc = 0.0
            for s in range(6):
                w = np.float64(Bw[s, i])
                acc += w * w * inv_Rd[Bc[s, i]]
            out[i] = max(d - acc, 1e-6 * d)

    @numba.njit(parallel=True, cache=True)
    def _scatter(x_r, x_b, red_rows, black_rows, x):
        for i in numba.prange(x_r.shape[0]):
            x[red_rows[i]] = x_r[i]
        for i in numba.prange(x_b.shape[0]):
            x[black_rows[i]] = x_b[i]


class RedBlackSystem:
    """The unknowns' system of a :class:`StencilMatrix` split by colour (see module doc)."""

    @staticmethod
    def applies(A):
        """The split needs the grid layout, and unknowns of both colours."""
        if A.unknown is None or A.shape[0] < 2:
            return False
        return bool(np.any(A.cols[[0, 1, 2, 4, 5, 6]] >= 0))

    def __init__(self, A):
        if A.unknown is None:
            raise ValueError("the red-black split needs the grid layout of the unknowns")
        n = A.shape[0]
        position = np.empty(n, dtype=A.cols.dtype)
        rows = np.empty(n, dtype=np.int64)
        n_red = _colour_rows(A.unknown, position, rows)
        self.red_rows, self.black_rows = rows[:n_red], rows[n_red:]
        dtype = A.vals.dtype
        blocks = []
        for part in (self.red_rows, self.black_rows):
            C = np.empty((6, part.size), dtype=A.cols.dtype)
            Wt = np.empty((6, part.size), dtype=dtype)
            d = np.empty(part.size, dtype=dtype)
            _split(A.cols, A.vals, position, part, C, Wt, d)
            blocks.append((C, Wt, d))
        (self.Rc, self.Rw, self.Rd), (self.Bc, self.Bw, self.Bd) = blocks
        inv_Rd = 1.0 / self.Rd.astype(np.float64)
        self.inv_Rd = inv_Rd.astype(dtype)
        diag = np.empty(self.black_rows.size)
        _schur_diagonal(self.Bc, self.Bw, self.Bd, inv_Rd, diag)
        self.inv_S_diag = (1.0 / diag).astype(dtype)
        self.dtype = dtype
        self.n = n

    def apply_schur(self, p, out, t_r):
        """out = S p (t_r: work vector of the red size); returns p . out."""
        _red_solve(self.Rc, self.Rw, self.inv_Rd, p[:0], p, t_r)
        return _black_apply_dot(self.Bc, self.Bw, self.Bd, t_r, p, out)


def redblack_cg(A, b, x0=None, *, tol=1e-3, maxiter=None, system=None):
    """Solve ``A x = b`` (A: StencilMatrix with grid layout) by Jacobi-CG on the black
    Schur complement; stops when the full system's residual is <= tol * ||b||. SciPy's
    return convention ``(x, info)``; ``system`` reuses a built :class:`RedBlackSystem`."""
    rb = RedBlackSystem(A) if system is None else system
    dtype = rb.dtype
    b = np.ascontiguousarray(b, dtype=dtype)
    bnorm2 = _dot(b, b)
    if bnorm2 == 0.0:
        return np.zeros(rb.n, dtype=dtype), 0
    threshold2 = tol * tol * bnorm2
    b_r = np.ascontiguousarray(b[rb.red_rows])
    b_b = np.ascontiguousarray(b[rb.black_rows])
    t_r = np.empty(rb.red_rows.size, dtype=dtype)
    # reduced right-hand side c = b_b + W^T D_r^{-1} b_r  (t_r = D_r^{-1} b_r, then D_b*0 - W^T t_r = -W^T t_r)
    zero_b = np.zeros(rb.black_rows.size, dtype=dtype)
    wt = np.empty_like(zero_b)
    _red_solve(rb.Rc, rb.Rw, rb.inv_Rd, b_r, zero_b, t_r)
    _black_apply_dot(rb.Bc, rb.Bw, rb.Bd, t_r, zero_b, wt)
    c = b_b - wt
    if x0 is None:
        x = np.zeros_like(zero_b)
        r = c
    else:
        x = np.ascontiguousarray(np.asarray(x0, dtype=dtype)[rb.black_rows])
        sx = np.empty_like(x)
        rb.apply_schur(x, sx, t_r)
        r = c - sx
    maxiter = int(maxiter or 10 * max(1, x.size))
    z = r * rb.inv_S_diag
    p = z.copy()
    sp = np.empty_like(p)
    rz = _dot(r, z)
    info = maxiter
    if _dot(r, r) <= threshold2:
        info = 0
    else:
        for _ in range(maxiter):
            pap = rb.apply_schur(p, sp, t_r)
            rz_new, rr = _update(x, r, p, sp, rb.inv_S_diag, dtype.type(rz / pap), z)
            if rr <= threshold2:
                info = 0
                break
            _direction(p, z, dtype.type(rz_new / rz))
            rz = rz_new
    _red_solve(rb.Rc, rb.Rw, rb.inv_Rd, b_r, x, t_r)
    out = np.empty(rb.n, dtype=dtype)
    _scatter(t_r, x, rb.red_rows, rb.black_rows, out)
    return out, info
