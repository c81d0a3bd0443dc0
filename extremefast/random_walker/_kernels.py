"""Compiled kernels of the random-walker solver: 7-column ELL mat-vec and a fused
Jacobi-preconditioned CG step, in Numba (CPU) and CUDA through CuPy (GPU).

The plain reference of both is :func:`extremefast.random_walker._solvers.cg` on the CSR
form of the same matrix, which tests compare against.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover
    numba = None

# Work items of the fused loops that reduce: partial sums per fixed chunk, added in order at
# the end, so a reduction gives the same bits whatever the number of threads.
_CHUNKS = 256


def ell_matvec(am, cols, vals, x):
    if am.device == "cuda":
        return _ell_matvec_cuda(cols, vals, x)
    y = np.empty(cols.shape[1], dtype=np.result_type(vals.dtype, x.dtype))
    _ell_matvec_numba(cols, vals, x, y)
    return y


if numba is not None:

    @numba.njit(cache=True)
    def _ordered_sum(partial):
        """Sum in index order. (Not ``partial.sum()``: inside a parallel function Numba
        turns that into a parallel reduction whose result depends on the thread count.)"""
        total = 0.0
        for v in partial:
            total += v
        return total

    @numba.njit(cache=True, inline="always")
    def _row(cols, vals, x, i):
        acc = 0.0
        for j in range(7):
            c = cols[j, i]
            if c >= 0:
                acc += vals[j, i] * x[c]
        return acc

    @numba.njit(parallel=True, cache=True)
    def _ell_matvec_numba(cols, vals, x, y):
        for i in numba.prange(cols.shape[1]):
            y[i] = _row(cols, vals, x, i)

    @numba.njit(parallel=True, cache=True)
    def _matvec_dot(cols, vals, p, ap):
        """ap = A p; returns p . ap accumulated in float64 (per-chunk partial sums rather
        than a prange reduction, which some Numba versions fail to analyse here)."""
        n = cols.shape[1]
        partial = np.zeros(_CHUNKS)
        size = (n + _CHUNKS - 1) // _CHUNKS
        for ch in numba.prange(_CHUNKS):
            total = 0.0
            for i in range(ch * size, min(n, (ch + 1) * size)):
                acc = _row(cols, vals, p, i)
                ap[i] = acc
                total += np.float64(p[i]) * acc
            partial[ch] = total
        return _ordered_sum(partial)

    @numba.njit(parallel=True, cache=True)
    def _update(x, r, p, ap, inv_diag, alpha, z):
        """x += alpha p; r -= alpha ap; z = r / diag; returns (r . z, r . r), summed in
        fixed chunks (the same result whatever the thread count)."""
        n = x.shape[0]
        size = (n + _CHUNKS - 1) // _CHUNKS
        partial_rz = np.zeros(_CHUNKS)
        partial_rr = np.zeros(_CHUNKS)
        for ch in numba.prange(_CHUNKS):
            rz = 0.0
            rr = 0.0
            for i in range(ch * size, min(n, (ch + 1) * size)):
                x[i] += alpha * p[i]
                r[i] -= alpha * ap[i]
                z[i] = r[i] * inv_diag[i]
                rz += np.float64(r[i]) * z[i]
                rr += np.float64(r[i]) * r[i]
            partial_rz[ch] = rz
            partial_rr[ch] = rr
        return _ordered_sum(partial_rz), _ordered_sum(partial_rr)

    @numba.njit(parallel=True, cache=True)
    def _dot(a, b):
        """a . b accumulated in float64 over fixed chunks. The solvers use this rather than
        np.dot: a BLAS call leaves OpenBLAS's threads spinning for ~0.1 s, and they take the
        cores from the compiled kernels that follow (measured: 5x slower kernels right
        after one)."""
        n = a.shape[0]
        size = (n + _CHUNKS - 1) // _CHUNKS
        partial = np.zeros(_CHUNKS)
        for ch in numba.prange(_CHUNKS):
            s = 0.0
            for i in range(ch * size, min(n, (ch + 1) * size)):
                s += np.float64(a[i]) * b[i]
            partial[ch] = s
        return _ordered_sum(partial)

    @numba.njit(parallel=True, cache=True)
    def _direction(p, z, beta):
        for i in numba.prange(p.shape[0]):
            p[i] = z[i] + beta * p[i]


if numba is not None:

    @numba.njit(parallel=True, cache=True)
    def _compact_from_ell(cols, vals, W, D):
        """ELL rows -> the symmetric compact form (see :class:`CompactStencil`)."""
        for i in numba.prange(cols.shape[1]):
            W[i, 0] = vals[3, i]
            # forward weights (+axis0, +axis1, +axis2), 0 unless the neighbour is unknown
            for a, slot in ((1, 6), (2, 5), (3, 4)):
                W[i, a] = -vals[slot, i] if cols[slot, i] >= 0 else 0.0
            # index offsets of the -axis0, -axis1, +axis1, +axis0 neighbours (0: none)
            for a, slot in ((0, 0), (1, 1), (2, 5), (3, 6)):
                c = cols[slot, i]
                D[i, a] = c - i if c >= 0 else 0

    @numba.njit(cache=True, inline="always")
    def _compact_offdiag(W, D, p, i, n):
        """sum_j w_ij p_j over the unknown neighbours j of row i (the row is d_i p_i - this)."""
        acc = 0.0
        if i + 1 < n:
            acc += W[i, 3] * p[i + 1]   # +axis2: the next unknown, or weight 0
        if i > 0:
            acc += W[i - 1, 3] * p[i - 1]  # -axis2: the previous row's forward weight
        # forward: a missing neighbour has offset 0 and weight 0, so no test is needed
        acc += W[i, 1] * p[i + D[i, 3]] + W[i, 2] * p[i + D[i, 2]]
        d = D[i, 0]
        if d != 0:
            acc += W[i + d, 1] * p[i + d]
        d = D[i, 1]
        if d != 0:
            acc += W[i + d, 2] * p[i + d]
        return acc

    @numba.njit(cache=True, inline="always")
    def _compact_row(W, D, p, i, n):
        return W[i, 0] * p[i] - _compact_offdiag(W, D, p, i, n)

    @numba.njit(parallel=True, cache=True)
    def _compact_matvec(W, D, p, ap):
        n = W.shape[0]
        for i in numba.prange(n):
            ap[i] = _compact_row(W, D, p, i, n)


class CompactStencil:
    """The unknowns' block in symmetric compact form, for the CPU solve.

    Unknowns are numbered in grid order, so the +axis2 neighbour of unknown ``i`` (when it
    is unknown) is ``i + 1``. Per row: ``W[i] = (diagonal, w+axis0, w+axis1, w+axis2)``,
    forward weights only (0 where that neighbour is not unknown), and ``D[i]`` the index
    offsets of the -axis0, -axis1, +axis1 and +axis0 neighbours (0 where none). A backward
    weight is the neighbour row's forward weight. That is 24 bytes a row instead of the ELL
    form's 56; the multigrid smoother and the coarse-level construction read it.
    """

    def __init__(self, A):
        n = A.shape[0]
        self.shape = A.shape
        self.W = np.empty((n, 4), dtype=A.vals.dtype)
        if A.unknown is not None:  # an axis-0 step skips at most one plane of the grid
            span = A.unknown.shape[1] * A.unknown.shape[2]
        else:
            nb = A.cols[[0, 1, 5, 6]]
            span = int(np.abs(np.where(nb >= 0, nb - np.arange(n, dtype=nb.dtype), 0)).max(initial=0))
        self.D = np.empty((n, 4), dtype=np.int16 if span < 2**15 else np.int32)
        _compact_from_ell(A.cols, A.vals, self.W, self.D)

    def __matmul__(self, x):
        ap = np.empty(self.shape[0], dtype=np.result_type(self.W.dtype, x.dtype))
        _compact_matvec(self.W, self.D, np.ascontiguousarray(x, dtype=ap.dtype), ap)
        return ap


def cg_start(A, b, x0, tol):
    """The start shared by the CPU CG solvers, in A's dtype: ``(x, r, threshold2, done)``
    with r = b - A x and the stopping bound on r . r; ``done`` when x already solves it
    (x = 0 for b = 0)."""
    n = b.shape[0]
    dtype = A.vals.dtype
    b = np.ascontiguousarray(b, dtype=dtype)
    bnorm2 = _dot(b, b)
    if bnorm2 == 0.0:
        return np.zeros(n, dtype=dtype), b.copy(), 0.0, True
    x = np.zeros(n, dtype=dtype) if x0 is None else np.array(x0, dtype=dtype)
    r = b - A @ x if x0 is not None else b.copy()
    threshold2 = tol * tol * bnorm2
    return x, r, threshold2, _dot(r, r) <= threshold2


def jacobi_cg_numba(A, b, x0=None, *, tol=1e-3, maxiter=None):
    """Jacobi-preconditioned CG on a :class:`StencilMatrix`, three fused passes per iteration.

    The ELL form is used as it is: its mat-vec measured 1.5 ms at 128^3 against 1.6 ms for
    the :class:`CompactStencil` form (gathers, not memory traffic, bound it on this CPU)."""
    maxiter = int(maxiter or 10 * b.shape[0])
    dtype = A.vals.dtype
    x, r, threshold2, done = cg_start(A, b, x0, tol)
    if done:
        return x, 0
    inv_diag = (1.0 / A.vals[3]).astype(dtype)
    z = r * inv_diag
    p = z.copy()
    ap = np.empty_like(p)
    rz = _dot(r, z)
    for it in range(1, maxiter + 1):
        pap = _matvec_dot(A.cols, A.vals, p, ap)
        alpha = rz / pap
        rz_new, rr = _update(x, r, p, ap, inv_diag, dtype.type(alpha), z)
        if rr <= threshold2:
            return x, 0
        _direction(p, z, dtype.type(rz_new / rz))
        rz = rz_new
    return x, maxiter


_CUDA_SRC = r"""
template <typename T, typename I>
__device__ void ell_matvec_impl(const I* cols, const T* vals, const T* x, T* y, long long n) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    T acc = 0;
    #pragma unroll
    for (int j = 0; j < 7; ++j) {
        long long c = (long long)cols[j * n + i];
        if (c >= 0) acc += vals[j * n + i] * x[c];
    }
    y[i] = acc;
}
extern "C" __global__ void ell_matvec_f32_i32(const int* c, const float* v, const float* x, float* y, long long n) {
    ell_matvec_impl<float, int>(c, v, x, y, n);
}
extern "C" __global__ void ell_matvec_f64_i32(const int* c, const double* v, const double* x, double* y, long long n) {
    ell_matvec_impl<double, int>(c, v, x, y, n);
}
extern "C" __global__ void ell_matvec_f64_i64(const long long* c, const double* v, const double* x, double* y,
                                              long long n) {
    ell_matvec_impl<double, long long>(c, v, x, y, n);
}
extern "C" __global__ void ell_matvec_f32_i64(const long long* c, const float* v, const float* x, float* y,
                                              long long n) {
    ell_matvec_impl<float, long long>(c, v, x, y, n);
}
"""
_cuda_modules = {}


def cuda_row_kernel(source, prefix, values, index):
    """The kernel ``{prefix}_{f32|f64}_{i32|i64}`` (for the dtypes of ``values`` and
    ``index``) of a CUDA source, compiled once through CuPy."""
    import cupy

    module = _cuda_modules.get(source)
    if module is None:
        module = _cuda_modules[source] = cupy.RawModule(code=source, options=("--std=c++14",))
    vtype = "f32" if values.dtype == cupy.float32 else "f64"
    itype = "i32" if index.dtype == cupy.int32 else "i64"
    return module.get_function(f"{prefix}_{vtype}_{itype}")


def launch_rows(kernel, n, args, threads=256):
    """Launch a one-thread-per-row kernel over ``n`` rows."""
    kernel(((n + threads - 1) // threads,), (threads,), args)


def _ell_matvec_cuda(cols, vals, x):
    """CUDA kernel through CuPy: one thread per row, no host synchronisation."""
    import cupy

    n = cols.shape[1]
    x = cupy.ascontiguousarray(x, dtype=vals.dtype)
    y = cupy.empty(n, dtype=vals.dtype)
    launch_rows(cuda_row_kernel(_CUDA_SRC, "ell_matvec", vals, cols), n, (cols, vals, x, y, cupy.int64(n)))
    return y
