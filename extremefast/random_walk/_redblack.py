"""The red-black reduced system of the random walker (Numba on the CPU, array operations elsewhere).

On the 6-neighbour grid every edge joins a "red" voxel (i + j + k even) to a "black" one,
so with the unknowns ordered red first the system reads

    [ D_r   -W ] [x_r]   [b_r]
    [ -W^T  D_b] [x_b] = [b_b]

with diagonal D_r, D_b. Eliminating the red unknowns leaves the Schur complement
``S = D_b - W^T D_r^{-1} W`` on the black ones (SPD, half the size), solved by
Jacobi-preconditioned CG (:mod:`._cg`); the red values follow exactly as
``D_r^{-1} (b_r + W x_b)``. If ``J`` is the Jacobi iteration matrix of the full system
with spectral radius rho, the scaled full system has condition number (1 + rho) / (1 - rho)
and the reduced one 1 / (1 - rho^2), about four times smaller near rho = 1: half the CG
iterations, each costing about one full mat-vec. The residual of the reduced system is
the full system's residual once the red values are recovered, so ``tol`` means what it
means for scikit-image's solve.

Robust form. ``S p`` is computed as ``s_b p_b + sum_r w_rb (p_b - t_r)`` with
``t_r = D_r^{-1} sum_b' w_rb' p_b'`` held in float64 and ``s_b`` the black voxel's coupling
to seeds (``D_b = s_b + sum_r w_rb``). The earlier form ``D_b p - W^T t`` with float32
``D_b`` and ``t`` cancels two nearly equal terms wherever a voxel is walled off by strong
edges; on real CT at beta 4000 its rounding made S indefinite and CG diverged
(probabilities of +-1e7 on 9 of 25 sarcoma crops). In the robust form every term is a
non-negative weight times a difference computed in float64, so the computed operator
stays the Schur complement of a valid graph.

The plain reference is the CSR form of the full system (and, in the tests, the Schur
complement formed densely). The compiled steps and the array-module steps (numpy in the
tests, CuPy on a GPU) build the same arrays; tests compare them.
"""
from __future__ import annotations

import numba
import numpy as np

from ._cg import ArraySteps, CompiledSteps
from ._kernels import _CHUNKS, SLOTS as _SLOTS, _ordered_sum



class RedBlackSystem:
    """The unknowns' system of a :class:`StencilMatrix` split by colour, as a CG system
    (see :mod:`._cg`): ``apply_dot``, ``inv_diag``, ``reduce``, ``restrict``, ``expand``.

    On the CPU the split and the products run as Numba kernels; with ``generic=True``, or
    for a matrix on a GPU, as array-module operations. Both give the same arrays.
    """

    @staticmethod
    def applies(A):
        """The split needs the grid layout, and unknowns of both colours."""
        if A.unknown is None or A.shape[0] < 2:
            return False
        xp = A.am.xp
        return bool(xp.any(A.cols[list(_SLOTS)] >= 0))

    def __init__(self, A, generic=False):
        if A.unknown is None:
            raise ValueError("the red-black split needs the grid layout of the unknowns")
        self.am = A.am
        self.compiled = A.am.device == "cpu" and not generic
        xp = self.am.xp
        self.dtype = np.dtype(A.vals.dtype)
        split = _split_compiled if self.compiled else _split_generic
        self.red_rows, self.black_rows, blocks = split(self.am, A)
        (self.Rc, self.Rw, self.Rs), (self.Bc, self.Bw, self.Bs) = blocks
        self.n_full = A.shape[0]
        self.n = int(self.black_rows.size)
        if self.compiled:
            self.inv_Rd = np.empty(self.red_rows.size)
            _red_inverse_diagonal(self.Rw, self.Rs, self.inv_Rd)
            diag = np.empty(self.n)
            _schur_diagonal(self.Bc, self.Bw, self.Bs, self.inv_Rd, diag)
        else:
            self.inv_Rd = 1.0 / (self.Rs.astype(np.float64) + self.Rw.astype(np.float64).sum(axis=0))
            w = self.Bw.astype(np.float64)
            # diag(S) = s_b + sum_r w (1 - w / d_r), each term >= 0 (a floor for rounding only)
            diag = self.Bs.astype(np.float64) + (w * xp.maximum(1.0 - w * self.inv_Rd[self.Bc], 0.0)).sum(axis=0)
            diag = xp.maximum(diag, 1e-12 * (self.Bs + self.Bw.sum(axis=0)).astype(np.float64) + 1e-300)
        self.inv_diag = (1.0 / diag).astype(self.dtype)
        self._t = xp.empty(self.red_rows.size, dtype=np.float64)
        self.steps = CompiledSteps(self.dtype) if self.compiled else ArraySteps(xp, self.dtype)

    # --- the CG system -------------------------------------------------------------
    def apply_dot(self, p, out):
        """out = S p; returns p . out (a float with the compiled steps, else a 0-d array)."""
        if self.compiled:
            _red_solve(self.Rc, self.Rw, self.inv_Rd, p[:0], p, self._t)
            return _black_apply_dot(self.Bc, self.Bw, self.Bs, self._t, p, out)
        self._red_generic(None, p, self._t)
        p64 = p.astype(np.float64)
        v = self.Bs * p64 + (self.Bw * (p64[None, :] - self._t[self.Bc])).sum(axis=0)
        out[...] = v
        return self.steps.dot(p64, v)

    def reduce(self, b):
        """The reduced right-hand side ``c = b_b + W^T D_r^{-1} b_r``."""
        xp = self.am.xp
        b_r = xp.ascontiguousarray(b[self.red_rows])
        b_b = xp.ascontiguousarray(b[self.black_rows])
        t = self._t
        if self.compiled:
            _red_solve(self.Rc, self.Rw, self.inv_Rd, b_r, b_b[:0], t)
            out = np.empty_like(b_b)
            _black_rhs(self.Bc, self.Bw, t, b_b, out)
            return out
        t[...] = b_r * self.inv_Rd
        return (b_b + (self.Bw * t[self.Bc]).sum(axis=0)).astype(self.dtype)

    def restrict(self, x0):
        return self.am.xp.ascontiguousarray(self.am.xp.asarray(x0, dtype=self.dtype)[self.black_rows])

    def expand(self, x_b, b):
        """The full system's solution: red values ``D_r^{-1} (b_r + W x_b)`` beside ``x_b``."""
        xp = self.am.xp
        b_r = xp.ascontiguousarray(b[self.red_rows])
        x_r = xp.empty(self.red_rows.size, dtype=self.dtype)
        out = xp.empty(self.n_full, dtype=self.dtype)
        if self.compiled:
            _red_solve(self.Rc, self.Rw, self.inv_Rd, b_r, x_b, x_r)
            _scatter(x_r, x_b, self.red_rows, self.black_rows, out)
            return out
        self._red_generic(b_r, x_b, x_r)
        out[self.red_rows] = x_r
        out[self.black_rows] = x_b
        return out

    def _red_generic(self, b_r, x_b, out):
        v = (self.Rw * x_b[self.Rc].astype(np.float64)).sum(axis=0)
        if b_r is not None:
            v += b_r
        out[...] = v * self.inv_Rd


def _split_compiled(am, A):
    n = A.shape[0]
    position = np.empty(n, dtype=A.cols.dtype)
    rows = np.empty(n, dtype=np.int64)
    n_red = _colour_rows(A.unknown, position, rows)
    red_rows, black_rows = rows[:n_red], rows[n_red:]
    blocks = []
    for part in (red_rows, black_rows):
        C = np.empty((6, part.size), dtype=A.cols.dtype)
        Wt = np.empty((6, part.size), dtype=A.vals.dtype)
        s = np.empty(part.size, dtype=A.vals.dtype)
        _split(A.cols, A.vals, A.coupling, position, part, C, Wt, s)
        blocks.append((C, Wt, s))
    return red_rows, black_rows, blocks


def _split_generic(am, A):
    """:func:`_split_compiled` as array operations: rows are unknowns in grid order, red
    where i + j + k is even; each row's six neighbours, renumbered within their colour."""
    xp = am.xp
    shape = A.unknown.shape
    flat = xp.flatnonzero(xp.ascontiguousarray(A.unknown).ravel())
    plane = shape[1] * shape[2]
    black = ((flat // plane + (flat % plane) // shape[2] + flat % shape[2]) % 2).astype(bool)
    position = xp.where(black, xp.cumsum(black) - 1, xp.cumsum(~black) - 1).astype(A.cols.dtype)
    red_rows, black_rows = xp.flatnonzero(~black), xp.flatnonzero(black)
    slots = list(_SLOTS)
    blocks = []
    for part in (red_rows, black_rows):
        cols = A.cols[slots][:, part]
        has = cols >= 0
        C = xp.where(has, position[xp.where(has, cols, 0)], 0).astype(A.cols.dtype)
        Wt = xp.where(has, -A.vals[slots][:, part], 0).astype(A.vals.dtype)
        blocks.append((C, Wt, A.coupling[part].astype(A.vals.dtype)))
    return red_rows, black_rows, blocks


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
def _split(cols, vals, coupling, position, rows, C, Wt, s):
    """ELL rows ``rows`` -> one colour's 6-column block (columns index the other colour's
    unknowns, weights positive, 0 where no unknown neighbour) and the rows' seed coupling."""
    for q in numba.prange(rows.shape[0]):
        i = rows[q]
        s[q] = coupling[i]
        m = 0
        for j in range(7):
            if j == 3:
                continue
            c = cols[j, i]
            if c >= 0:
                C[m, q] = position[c]
                Wt[m, q] = -vals[j, i]
            else:
                C[m, q] = 0
                Wt[m, q] = 0.0
            m += 1


@numba.njit(parallel=True, cache=True)
def _red_inverse_diagonal(Rw, Rs, out):
    """1 / d_r with d_r = s_r + sum of the red row's weights, in float64."""
    for i in numba.prange(out.shape[0]):
        d = np.float64(Rs[i])
        for m in range(6):
            d += np.float64(Rw[m, i])
        out[i] = 1.0 / d


@numba.njit(parallel=True, cache=True)
def _schur_diagonal(Bc, Bw, Bs, inv_Rd, out):
    """diag(S) = s_b + sum_r w (1 - w / d_r) in float64: non-negative terms (floored at 0
    against rounding), so no subtraction of nearly equal totals."""
    for i in numba.prange(out.shape[0]):
        total = np.float64(Bs[i])
        scale = total
        for m in range(6):
            w = np.float64(Bw[m, i])
            total += w * max(1.0 - w * inv_Rd[Bc[m, i]], 0.0)
            scale += w
        out[i] = max(total, 1e-12 * scale + 1e-300)


@numba.njit(parallel=True, cache=True)
def _red_solve(Rc, Rw, inv_Rd, b_r, x_b, out):
    """out = D_r^{-1} (b_r + W x_b), summed in float64; a zero-length b_r or x_b stands
    for zero."""
    with_b = b_r.shape[0] > 0
    with_x = x_b.shape[0] > 0
    for i in numba.prange(out.shape[0]):
        acc = 0.0
        if with_x:
            for m in range(6):
                acc += np.float64(Rw[m, i]) * x_b[Rc[m, i]]
        if with_b:
            acc += b_r[i]
        out[i] = acc * inv_Rd[i]


@numba.njit(parallel=True, cache=True)
def _black_apply_dot(Bc, Bw, Bs, t, p, sp):
    """sp = s_b p + sum_r w_rb (p - t_r) (= S p for t = D_r^{-1} W p), in float64;
    returns p . sp."""
    n = p.shape[0]
    partial = np.zeros(_CHUNKS)
    size = (n + _CHUNKS - 1) // _CHUNKS
    for ch in numba.prange(_CHUNKS):
        total = 0.0
        for i in range(ch * size, min(n, (ch + 1) * size)):
            pi = np.float64(p[i])
            v = np.float64(Bs[i]) * pi
            for m in range(6):
                v += np.float64(Bw[m, i]) * (pi - t[Bc[m, i]])
            sp[i] = v
            total += pi * v
        partial[ch] = total
    return _ordered_sum(partial)


@numba.njit(parallel=True, cache=True)
def _black_rhs(Bc, Bw, t, b_b, out):
    """out = b_b + W^T t (the reduced right-hand side for t = D_r^{-1} b_r)."""
    for i in numba.prange(out.shape[0]):
        acc = np.float64(b_b[i])
        for m in range(6):
            acc += np.float64(Bw[m, i]) * t[Bc[m, i]]
        out[i] = acc


@numba.njit(parallel=True, cache=True)
def _scatter(x_r, x_b, red_rows, black_rows, x):
    for i in numba.prange(x_r.shape[0]):
        x[red_rows[i]] = x_r[i]
    for i in numba.prange(x_b.shape[0]):
        x[black_rows[i]] = x_b[i]
