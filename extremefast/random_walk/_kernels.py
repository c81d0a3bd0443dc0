"""Kernels shared by the random-walker solves: the 7-column ELL mat-vec and the fused
Jacobi-CG vector steps, in Numba (CPU) and CUDA through CuPy (GPU).

The mat-vec is written in the Laplacian form ``(A p)_i = s_i p_i + sum_j w_ij (p_i - p_j)``
(``s_i`` the row's coupling to seeds, ``w_ij`` the edge weights), accumulated in float64.
With float32 storage this keeps the operator positive definite: the rounded weights are
another valid graph, whereas the assembled form ``d_i p_i - sum_j w_ij p_j`` with a
float32 diagonal loses the 1e-10 weights of voxels walled off by strong edges (1 + 1e-10
is 1 in float32) and made the reduced solve diverge on real CT (beta 4000). The plain
reference is the CSR form of the same matrix times a vector (tests compare the two).
"""
from __future__ import annotations

import numpy as np

import numba

# Work items of the fused loops that reduce: partial sums per fixed chunk, added in order at
# the end, so a reduction gives the same bits whatever the number of threads.
_CHUNKS = 256


def ell_matvec(am, cols, vals, coupling, x):
    """A x in the Laplacian form (see the module doc), on the array module's device."""
    if am.device == "cuda":
        return _ell_matvec_cuda(cols, vals, coupling, x)
    x = np.ascontiguousarray(x, dtype=vals.dtype)
    y = np.empty(cols.shape[1], dtype=vals.dtype)
    _ell_matvec_numba(cols, vals, coupling, x, y)
    return y


SLOTS = (0, 1, 2, 4, 5, 6)  # the ELL columns of the six neighbours (3 is the diagonal)


def ell_matvec_plain(cols, vals, coupling, x):
    """:func:`ell_matvec` as array operations (numpy), the reference of the kernels."""
    return laplacian_matvec_array(np, cols, vals, coupling, x).astype(vals.dtype)


def laplacian_matvec_array(xp, cols, vals, coupling, x):
    """``A x`` in the Laplacian form as array-module operations, in float64 whatever the
    storage (numpy or CuPy)."""
    x64 = xp.asarray(x, dtype=np.float64)
    y = coupling.astype(np.float64) * x64
    for j in SLOTS:
        c = cols[j]
        has = c >= 0
        w = -vals[j].astype(np.float64)
        y += xp.where(has, w * (x64 - x64[xp.where(has, c, 0)]), 0.0)
    return y



@numba.njit(cache=True)
def _ordered_sum(partial):
    """Sum in index order. (Not ``partial.sum()``: inside a parallel function Numba
    turns that into a parallel reduction whose result depends on the thread count.)"""
    total = 0.0
    for v in partial:
        total += v
    return total

@numba.njit(cache=True, inline="always")
def _row(cols, vals, coupling, x, i):
    """s_i x_i + sum_j w_ij (x_i - x_j) in float64 (ELL slots hold -w_ij; slot 3 the diagonal)."""
    xi = np.float64(x[i])
    acc = np.float64(coupling[i]) * xi
    for j in (0, 1, 2, 4, 5, 6):
        c = cols[j, i]
        if c >= 0:
            acc -= np.float64(vals[j, i]) * (xi - np.float64(x[c]))
    return acc

@numba.njit(parallel=True, cache=True)
def _ell_matvec_numba(cols, vals, coupling, x, y):
    for i in numba.prange(cols.shape[1]):
        y[i] = _row(cols, vals, coupling, x, i)

@numba.njit(parallel=True, cache=True)
def _matvec_dot(cols, vals, coupling, p, ap):
    """ap = A p; returns p . ap accumulated in float64 (per-chunk partial sums rather
    than a prange reduction, which some Numba versions fail to analyse here)."""
    n = cols.shape[1]
    partial = np.zeros(_CHUNKS)
    size = (n + _CHUNKS - 1) // _CHUNKS
    for ch in numba.prange(_CHUNKS):
        total = 0.0
        for i in range(ch * size, min(n, (ch + 1) * size)):
            acc = _row(cols, vals, coupling, p, i)
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


_CUDA_SRC = r"""
template <typename T, typename I>
__device__ void ell_matvec_impl(const I* cols, const T* vals, const T* coupling, const T* x, T* y, long long n) {
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    // the Laplacian form s_i x_i + sum_j w_ij (x_i - x_j), accumulated in double
    double xi = (double)x[i];
    double acc = (double)coupling[i] * xi;
    #pragma unroll
    for (int j = 0; j < 7; ++j) {
        if (j == 3) continue;
        long long c = (long long)cols[j * n + i];
        if (c >= 0) acc -= (double)vals[j * n + i] * (xi - (double)x[c]);
    }
    y[i] = (T)acc;
}
#define ELL_MATVEC(NAME, T, I) \
extern "C" __global__ void NAME(const I* c, const T* v, const T* s, const T* x, T* y, long long n) { \
    ell_matvec_impl<T, I>(c, v, s, x, y, n); }
ELL_MATVEC(ell_matvec_f32_i32, float, int)
ELL_MATVEC(ell_matvec_f64_i32, double, int)
ELL_MATVEC(ell_matvec_f32_i64, float, long long)
ELL_MATVEC(ell_matvec_f64_i64, double, long long)
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


def _ell_matvec_cuda(cols, vals, coupling, x):
    """CUDA kernel through CuPy: one thread per row, no host synchronisation."""
    import cupy

    n = cols.shape[1]
    x = cupy.ascontiguousarray(x, dtype=vals.dtype)
    y = cupy.empty(n, dtype=vals.dtype)
    launch_rows(cuda_row_kernel(_CUDA_SRC, "ell_matvec", vals, cols), n,
                (cols, vals, cupy.ascontiguousarray(coupling, dtype=vals.dtype), x, y, cupy.int64(n)))
    return y
