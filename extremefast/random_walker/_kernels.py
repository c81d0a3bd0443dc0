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


def ell_matvec(am, cols, vals, x):
    if am.device == "cuda":
        return _ell_matvec_cuda(cols, vals, x)
    y = np.empty(cols.shape[1], dtype=np.result_type(vals.dtype, x.dtype))
    _ell_matvec_numba(cols, vals, x, y)
    return y


if numba is not None:

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

    _CHUNKS = 256  # work items of the fused loops; partial sums per chunk, added at the end

    @numba.njit(parallel=True, cache=True)
    def _matvec_dot(cols, vals, p, ap):
        """ap = A p; returns p . ap accumulated in float64 (per-chunk partial sums rather
        than a prange reduction, which some Numba versions fail to analyse here)."""
        n = cols.shape[1]
        chunks = _CHUNKS
        partial = np.zeros(chunks)
        size = (n + chunks - 1) // chunks
        for ch in numba.prange(chunks):
            total = 0.0
            for i in range(ch * size, min(n, (ch + 1) * size)):
                acc = _row(cols, vals, p, i)
                ap[i] = acc
                total += np.float64(p[i]) * acc
            partial[ch] = total
        return partial.sum()

    @numba.njit(parallel=True, cache=True)
    def _update(x, r, p, ap, inv_diag, alpha, z):
        """x += alpha p; r -= alpha ap; z = r / diag; returns (r . z, r . r)."""
        n = x.shape[0]
        rz = 0.0
        rr = 0.0
        for i in numba.prange(n):
            x[i] += alpha * p[i]
            r[i] -= alpha * ap[i]
            z[i] = r[i] * inv_diag[i]
            rz += np.float64(r[i]) * z[i]
            rr += np.float64(r[i]) * r[i]
        return rz, rr

    @numba.njit(parallel=True, cache=True)
    def _direction(p, z, beta):
        for i in numba.prange(p.shape[0]):
            p[i] = z[i] + beta * p[i]


def jacobi_cg_numba(A, b, x0=None, *, tol=1e-3, maxiter=None):
    """Jacobi-preconditioned CG on a :class:`StencilMatrix`, two fused passes per iteration."""
    n = b.shape[0]
    maxiter = int(maxiter or 10 * n)
    dtype = A.vals.dtype
    b = np.ascontiguousarray(b, dtype=dtype)
    x = np.zeros(n, dtype=dtype) if x0 is None else np.array(x0, dtype=dtype)
    r = b - A @ x if x0 is not None else b.copy()
    bnorm = float(np.linalg.norm(b.astype(np.float64)))
    if bnorm == 0.0:
        return np.zeros(n, dtype=dtype), 0
    threshold2 = (tol * bnorm) ** 2
    inv_diag = (1.0 / A.vals[3]).astype(dtype)
    z = r * inv_diag
    p = z.copy()
    ap = np.empty_like(p)
    rz = float(np.dot(r.astype(np.float64), z))
    if float(np.dot(r.astype(np.float64), r)) <= threshold2:
        return x, 0
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
_cuda_module = None


def _ell_matvec_cuda(cols, vals, x):
    """CUDA kernel through CuPy: one thread per row, no host synchronisation."""
    import cupy

    global _cuda_module
    if _cuda_module is None:
        _cuda_module = cupy.RawModule(code=_CUDA_SRC, options=("--std=c++14",))
    n = cols.shape[1]
    vtype = "f32" if vals.dtype == cupy.float32 else "f64"
    itype = "i32" if cols.dtype == cupy.int32 else "i64"
    x = cupy.ascontiguousarray(x, dtype=vals.dtype)
    y = cupy.empty(n, dtype=vals.dtype)
    threads = 256
    kernel = _cuda_module.get_function(f"ell_matvec_{vtype}_{itype}")
    kernel(((n + threads - 1) // threads,), (threads,), (cols, vals, x, y, cupy.int64(n)))
    return y
