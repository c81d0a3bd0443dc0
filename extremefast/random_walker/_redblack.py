"""Red-black reduced Jacobi-CG for the random walker's system (Numba on the CPU, CuPy on a GPU).

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
full system (and, in the tests, the Schur complement formed densely). The split and the CG
loop are written once, with two sets of steps: fused Numba kernels (the CPU default) and
array-module operations (numpy in the tests, CuPy on a GPU, where the six-neighbour gathers
are one CUDA kernel); tests compare the two.
"""
from __future__ import annotations

import numpy as np

from ._kernels import _CHUNKS, _direction, _dot, _ordered_sum, _update, cuda_row_kernel, launch_rows, numba

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


_SLOTS = (0, 1, 2, 4, 5, 6)  # the ELL columns of the six neighbours (3 is the diagonal)


class RedBlackSystem:
    """The unknowns' system of a :class:`StencilMatrix` split by colour (see module doc).

    On the CPU the split and the products run as Numba kernels; with ``generic=True``, or
    for a matrix on a GPU, as array-module operations (the GPU's gathers as one CUDA
    kernel). Both give the same arrays.
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
        self.compiled = A.am.device == "cpu" and not generic and numba is not None
        xp = self.am.xp
        dtype = A.vals.dtype
        split = _split_compiled if self.compiled else _split_generic
        self.red_rows, self.black_rows, blocks = split(self.am, A)
        (self.Rc, self.Rw, self.Rd), (self.Bc, self.Bw, self.Bd) = blocks
        inv_Rd = 1.0 / self.Rd.astype(np.float64)
        self.inv_Rd = inv_Rd.astype(dtype)
        if self.compiled:
            diag = np.empty(self.black_rows.size)
            _schur_diagonal(self.Bc, self.Bw, self.Bd, inv_Rd, diag)
        else:  # diag(S) = D_b - sum_r w^2 / D_r, kept above 1e-6 D_b (rounding only could push it lower)
            w = self.Bw.astype(np.float64)
            d = self.Bd.astype(np.float64)
            diag = xp.maximum(d - (w * w * inv_Rd[self.Bc]).sum(axis=0), 1e-6 * d)
        self.inv_S_diag = (1.0 / diag).astype(dtype)
        self.dtype = np.dtype(dtype)
        self.n = A.shape[0]

    def red(self, b_r, x_b, out):
        """out = D_r^{-1} (b_r + W x_b); b_r None for b_r = 0."""
        if self.compiled:
            _red_solve(self.Rc, self.Rw, self.inv_Rd, x_b[:0] if b_r is None else b_r, x_b, out)
        else:
            _gather_rows(self.am, self.Rc, self.Rw, x_b, out, add=b_r, scale=self.inv_Rd)
        return out

    def black(self, t_r, p, out):
        """out = D_b p - W^T t_r (S p when t_r = D_r^{-1} W p); returns p . out (a float
        on the CPU, a 0-d device array on a GPU)."""
        if self.compiled:
            return _black_apply_dot(self.Bc, self.Bw, self.Bd, t_r, p, out)
        _gather_rows(self.am, self.Bc, self.Bw, t_r, out, sign=-1.0, diag=self.Bd, y=p)
        return self.am.xp.vdot(p, out)

    def apply_schur(self, p, out, t_r):
        """out = S p (t_r: work vector of the red size); returns p . out."""
        return self.black(self.red(None, p, t_r), p, out)

    def scatter(self, x_r, x_b):
        """The full system's vector from its red and black parts."""
        xp = self.am.xp
        out = xp.empty(self.n, dtype=self.dtype)
        if self.compiled:
            _scatter(x_r, x_b, self.red_rows, self.black_rows, out)
        else:
            out[self.red_rows] = x_r
            out[self.black_rows] = x_b
        return out


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
        d = np.empty(part.size, dtype=A.vals.dtype)
        _split(A.cols, A.vals, position, part, C, Wt, d)
        blocks.append((C, Wt, d))
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
        blocks.append((C, Wt, A.vals[3, part].copy()))
    return red_rows, black_rows, blocks


def _gather_rows(am, C, W, x, out, *, sign=1.0, add=None, scale=None, diag=None, y=None):
    """out = scale * (diag * y + sign * sum_s W[s] x[C[s]] + add), absent terms left out:
    one CUDA kernel on a GPU, array operations elsewhere."""
    if am.device == "cuda":
        return _gather_cuda(C, W, x, out, sign, add, scale, diag, y)
    v = sign * (W * x[C]).sum(axis=0)
    if diag is not None:
        v += diag * y
    if add is not None:
        v += add
    if scale is not None:
        v *= scale
    out[...] = v
    return out


class _CompiledSteps:
    """The CG vector steps as fused Numba kernels (CPU)."""

    def __init__(self, dtype):
        self.dtype = dtype

    def dot(self, a, b):
        return _dot(a, b)

    def ratio(self, num, den):
        return self.dtype.type(num / den)

    def update(self, x, r, p, sp, inv, alpha, z, with_rr):
        """(r . z, r . r) after the step (both from one fused pass)."""
        return _update(x, r, p, sp, inv, alpha, z)

    def direction(self, p, z, beta):
        _direction(p, z, beta)


class _ArraySteps:
    """The same steps as array operations: scalars stay 0-d device arrays (no host copy),
    and a zero denominator gives a zero step (a residual that reached exactly 0 between
    two convergence checks)."""

    def __init__(self, xp, dtype):
        self.xp, self.dtype = xp, dtype

    def dot(self, a, b):
        return self.xp.vdot(a, b)

    def ratio(self, num, den):
        xp = self.xp
        return xp.where(den != 0, num / xp.where(den != 0, den, 1), 0).astype(self.dtype)

    def update(self, x, r, p, sp, inv, alpha, z, with_rr):
        """(r . z, r . r) after the step; r . r only when ``with_rr`` (a convergence test)."""
        xp = self.xp
        x += alpha * p
        r -= alpha * sp
        xp.multiply(r, inv, out=z)
        return xp.vdot(r, z), (xp.vdot(r, r) if with_rr else None)

    def direction(self, p, z, beta):
        p *= beta
        p += z


def redblack_cg(A, b, x0=None, *, tol=1e-3, maxiter=None, system=None, check_every=None):
    """Solve ``A x = b`` (A: StencilMatrix with grid layout) by Jacobi-CG on the black
    Schur complement; stops when the full system's residual is <= tol * ||b||, tested
    every ``check_every`` iterations (default: every one with the compiled kernels, every
    10th otherwise, where each test is a device-to-host copy). SciPy's return convention
    ``(x, info)``; ``system`` reuses a built :class:`RedBlackSystem`."""
    rb = RedBlackSystem(A) if system is None else system
    xp = rb.am.xp
    dtype = rb.dtype
    steps = _CompiledSteps(dtype) if rb.compiled else _ArraySteps(xp, dtype)
    check_every = int(check_every or (1 if rb.compiled else 10))
    b = xp.ascontiguousarray(xp.asarray(b, dtype=dtype))
    bnorm2 = float(steps.dot(b, b))
    if bnorm2 == 0.0:
        return xp.zeros(rb.n, dtype=dtype), 0
    threshold2 = tol * tol * bnorm2
    b_r = xp.ascontiguousarray(b[rb.red_rows])
    b_b = xp.ascontiguousarray(b[rb.black_rows])
    t_r = xp.empty(rb.red_rows.size, dtype=dtype)
    # reduced right-hand side c = b_b + W^T D_r^{-1} b_r  (t_r = D_r^{-1} b_r, then D_b*0 - W^T t_r = -W^T t_r)
    zero_b = xp.zeros(rb.black_rows.size, dtype=dtype)
    wt = xp.empty_like(zero_b)
    rb.black(rb.red(b_r, zero_b, t_r), zero_b, wt)
    c = b_b - wt
    if x0 is None:
        x = zero_b
        r = c
    else:
        x = xp.ascontiguousarray(xp.asarray(x0, dtype=dtype)[rb.black_rows])
        sx = xp.empty_like(x)
        rb.apply_schur(x, sx, t_r)
        r = c - sx
    maxiter = int(maxiter or 10 * max(1, x.size))
    z = r * rb.inv_S_diag
    p = z.copy()
    sp = xp.empty_like(p)
    rz = steps.dot(r, z)
    info = 0 if float(steps.dot(r, r)) <= threshold2 else maxiter
    it = 0
    while info and it < maxiter:
        it += 1
        pap = rb.apply_schur(p, sp, t_r)
        check = it % check_every == 0 or it == maxiter
        rz_new, rr = steps.update(x, r, p, sp, rb.inv_S_diag, steps.ratio(rz, pap), z, check)
        if check and float(rr) <= threshold2:
            info = 0
            break
        steps.direction(p, z, steps.ratio(rz_new, rz))
        rz = rz_new
    return rb.scatter(rb.red(b_r, x, t_r), x), info


_CUDA_SRC = r"""
template <typename T, typename I>
__device__ void gather6(const I* C, const T* W, const T* x, T* out, T sign, const T* add, const T* scale,
                        const T* diag, const T* y, int flags, long long n) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    T acc = 0;
    #pragma unroll
    for (int s = 0; s < 6; ++s) acc += W[s * n + i] * x[(long long)C[s * n + i]];
    T v = sign * acc;
    if (flags & 1) v += diag[i] * y[i];
    if (flags & 2) v += add[i];
    if (flags & 4) v *= scale[i];
    out[i] = v;
}
#define GATHER6(NAME, T, I) \
extern "C" __global__ void NAME(const I* C, const T* W, const T* x, T* out, T sign, const T* add, const T* scale, \
                                const T* diag, const T* y, int flags, long long n) { \
    gather6<T, I>(C, W, x, out, sign, add, scale, diag, y, flags, n); }
GATHER6(gather6_f32_i32, float, int)
GATHER6(gather6_f64_i32, double, int)
GATHER6(gather6_f32_i64, float, long long)
GATHER6(gather6_f64_i64, double, long long)
"""


def _gather_cuda(C, W, x, out, sign, add, scale, diag, y):
    """:func:`_gather_rows` as one CUDA kernel through CuPy (one thread per row); absent terms
    are switched off by flags (their pointers then point at ``out`` and are never read)."""
    n = out.shape[0]
    flags = (diag is not None) | (add is not None) << 1 | (scale is not None) << 2
    pick = lambda a: out if a is None else a
    launch_rows(cuda_row_kernel(_CUDA_SRC, "gather6", out, C), n,
                (C, W, x, out, out.dtype.type(sign), pick(add), pick(scale), pick(diag), pick(y), np.int32(flags),
                 np.int64(n)))
    return out
