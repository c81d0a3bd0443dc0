"""Vectorised assembly of the random walker's linear system on a 6-neighbour grid.

The grid is padded by one inactive voxel on every side, so the neighbours of flat index
p are p +- stride with no bounds test; every quantity of the unknowns' rows is then one
gather. Everything is written against the array module, so the same functions assemble
the system with numpy/scipy on the CPU and with cupy/cupyx on a GPU.
"""
from __future__ import annotations

import numpy as np

from ._kernels import numba


def edge_weights(am, data, spacing, beta, eps=1e-10):
    """Edge weights along each of the three axes (scikit-image's weighting).

    ``data`` has shape (X, Y, Z, C). For axis a the result has shape X-1 along a:
    ``w = exp(-beta / (10 * std(data)) * sum_c (diff_a data_c / spacing_a)^2) + eps``
    (divided by sqrt(C) for several channels). A constant image (std 0) gives uniform
    weights 1 + eps: plain diffusion, a finite and documented answer.
    """
    xp = am.xp
    std = float(data.std())
    scale = -beta / (10.0 * std) if std > 0 else 0.0
    if data.shape[-1] > 1:
        scale /= np.sqrt(data.shape[-1])
    weights = []
    for ax in range(3):
        if data.shape[ax] < 2:
            weights.append(None)
            continue
        g = xp.diff(data, axis=ax) / float(spacing[ax])
        g2 = (g * g).sum(axis=-1)
        weights.append(xp.exp(scale * g2) + eps)
    return weights


def _padded(am, a, fill, dtype):
    xp = am.xp
    out = xp.full(tuple(s + 2 for s in a.shape), fill, dtype=dtype)
    out[1:-1, 1:-1, 1:-1] = a
    return out


def build_unknown_system(am, weights, labels, nlabels, active=None, dtype=np.float32):
    """The unknowns' block ``L_U`` (CSR) and right-hand sides ``-B^T M`` (n_u x nlabels).

    ``labels`` (X, Y, Z) holds 0 for unknown nodes and 1..nlabels for seeds; ``active``
    (bool, or None for all) removes nodes, with their edges, from the graph. Rows are built
    as seven fixed columns per node (in increasing column order) and masked, so no sparse
    matrix is ever modified in place. Returns ``(A, rhs, unknown_mask)``.
    """
    xp = am.xp
    shape = labels.shape
    lab = labels if active is None else xp.where(active, labels, -1)
    lab_p = _padded(am, lab, -1, np.int32)           # -1 = inactive / outside
    pshape = lab_p.shape
    strides = (pshape[1] * pshape[2], pshape[2], 1)
    flat_lab = lab_p.ravel()
    u = xp.flatnonzero(flat_lab == 0)                  # padded flat indices of unknowns
    n_u = int(u.size)
    index_dtype = np.int32 if flat_lab.size < 2**31 - 1 else np.int64
    index = xp.full(flat_lab.size, -1, dtype=index_dtype)
    index[u] = xp.arange(n_u, dtype=index_dtype)

    # ELL rows, columns in increasing order: -axis0, -axis1, -axis2, diagonal, +axis2, +axis1, +axis0.
    slot = {(0, -1): 0, (1, -1): 1, (2, -1): 2, (2, 1): 4, (1, 1): 5, (0, 1): 6}
    cols = xp.empty((7, n_u), dtype=index_dtype)
    vals = xp.empty((7, n_u), dtype=dtype)
    cols[3] = xp.arange(n_u, dtype=index_dtype)
    vals[3] = 0
    rhs = xp.zeros((n_u, nlabels), dtype=dtype)
    w_full = xp.zeros(pshape, dtype=dtype)
    w_flat = w_full.ravel()
    for ax in range(3):
        # w_full[p] = weight of the edge (p, p + stride) along ax, 0 where there is none
        w_full[...] = 0
        if weights[ax] is not None:
            dst = [slice(1, -1)] * 3
            dst[ax] = slice(1, shape[ax])
            w_full[tuple(dst)] = weights[ax]
        for step in (-1, 1):
            nb = u + step * strides[ax]
            row = slot[(ax, step)]
            w = vals[row]
            xp.take(w_flat, u if step > 0 else nb, out=w)
            nb_lab = flat_lab[nb]
            w *= nb_lab >= 0                           # no edge to inactive nodes
            vals[3] += w
            xp.take(index, nb, out=cols[row])
            for k in range(nlabels):
                rhs[:, k] += w * (nb_lab == k + 1)
            xp.negative(w, out=w)
    unknown = (lab_p == 0)[1:-1, 1:-1, 1:-1]
    A = StencilMatrix(am, cols, vals, unknown=unknown, coupling=rhs.sum(axis=1))
    return A, rhs, unknown


def stack_systems(am, matrices):
    """Block-diagonal stack of several :class:`StencilMatrix` (one per case) and the case
    index of every row: the batched solve's one matrix, one mat-vec kernel for all cases."""
    xp = am.xp
    cols, vals, coupling, case = [], [], [], []
    offset = 0
    for k, A in enumerate(matrices):
        cols.append(xp.where(A.cols >= 0, A.cols + offset, -1).astype(np.int64 if offset + A.shape[0] >= 2**31 - 1
                                                                       else A.cols.dtype))
        vals.append(A.vals)
        coupling.append(A.coupling)
        case.append(xp.full(A.shape[0], k, dtype=np.int32))
        offset += A.shape[0]
    if not matrices:
        return StencilMatrix(am, xp.empty((7, 0), dtype=np.int32), xp.empty((7, 0), dtype=np.float32),
                             coupling=xp.empty(0, dtype=np.float32)), xp.empty(0, dtype=np.int32)
    index_dtype = np.result_type(*[c.dtype for c in cols])
    return (StencilMatrix(am, xp.concatenate([c.astype(index_dtype) for c in cols], axis=1),
                          xp.concatenate(vals, axis=1), coupling=xp.concatenate(coupling)), xp.concatenate(case))


class StencilMatrix:
    """The unknowns' block in a 7-column ELL layout: ``cols``/``vals`` of shape (7, n).

    Column -1 marks a missing neighbour; slot 3 is the diagonal. ``unknown`` is the grid
    mask of the rows (in grid order; the red-black split needs it) and ``coupling`` each
    row's total edge weight to seeds. ``A @ x`` runs a compiled kernel in the Laplacian
    form (see ``_kernels``; Numba on the CPU, CUDA through CuPy on a GPU); :meth:`tocsr`
    gives the same matrix in CSR form for pyamg and direct solvers.
    """

    def __init__(self, am, cols, vals, unknown=None, coupling=None):
        self.am = am
        self.cols = cols
        self.vals = vals
        self.unknown = unknown
        self.coupling = coupling
        self.shape = (int(cols.shape[1]), int(cols.shape[1]))
        self.dtype = vals.dtype
        self._csr = None

    def diagonal(self):
        return self.vals[3]

    def __matmul__(self, x):
        from ._kernels import ell_matvec

        return ell_matvec(self.am, self.cols, self.vals, self.coupling, x)

    def astype(self, dtype):
        coupling = None if self.coupling is None else self.coupling.astype(dtype)
        return StencilMatrix(self.am, self.cols, self.vals.astype(dtype), self.unknown, coupling)

    def tocsr(self):
        if self._csr is None:
            xp = self.am.xp
            n = self.shape[0]
            col_t = self.cols.T
            keep = col_t >= 0
            indptr = xp.zeros(n + 1, dtype=np.int64)
            xp.cumsum(keep.sum(axis=1), out=indptr[1:])
            idt = np.int32 if int(indptr[-1]) < 2**31 - 1 else np.int64
            self._csr = self.am.sparse.csr_matrix(
                (self.vals.T[keep], col_t[keep].astype(idt), indptr.astype(idt)), shape=self.shape)
            self._csr.has_sorted_indices = True
        return self._csr


def assemble_cpu(data, labels, active, nlabels, spacing, beta, dtype=np.float32, eps=1e-10):
    """:func:`edge_weights` + :func:`build_unknown_system` fused into two compiled passes
    (Numba, CPU): the same ``(A, rhs, unknown)`` without the full-grid temporaries.

    ``data`` (X, Y, Z, C), ``labels`` (X, Y, Z) with 0 unknown and 1..nlabels seeds,
    ``active`` a bool mask or None. The array-module functions above are its reference.
    """
    from ..xp import array_module

    am = array_module("cpu")
    dtype = np.dtype(dtype)
    data = np.ascontiguousarray(data, dtype=dtype)
    std = float(data.std())
    scale = -beta / (10.0 * std) if std > 0 else 0.0
    if data.shape[-1] > 1:
        scale /= np.sqrt(data.shape[-1])
    lab = labels if active is None else np.where(active, labels, -1)
    lab_p = np.full(tuple(s + 2 for s in lab.shape), -1, dtype=np.int32)
    lab_p[1:-1, 1:-1, 1:-1] = lab
    counts = np.empty(lab_p.shape[0], dtype=np.int64)
    _count_unknowns(lab_p, counts)
    starts = np.zeros(lab_p.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    n_u = int(starts[-1])
    index_dtype = np.int32 if lab_p.size < 2**31 - 1 else np.int64
    index = np.empty(lab_p.size, dtype=index_dtype)
    _number_unknowns(lab_p, starts, index)
    cols = np.empty((7, n_u), dtype=index_dtype)
    vals = np.empty((7, n_u), dtype=dtype)
    rhs = np.zeros((n_u, nlabels), dtype=dtype)
    inv_spacing = 1.0 / np.asarray(spacing, dtype=np.float64)
    coupling = np.empty(n_u, dtype=dtype)
    _assemble_rows(lab_p, starts, data, inv_spacing, scale, eps, index, cols, vals, rhs, coupling)
    unknown = (lab_p == 0)[1:-1, 1:-1, 1:-1]
    A = StencilMatrix(am, cols, vals, unknown=unknown, coupling=coupling)
    return A, rhs, unknown



@numba.njit(parallel=True, cache=True)
def _count_unknowns(lab_p, counts):
    for i in numba.prange(lab_p.shape[0]):
        c = 0
        for j in range(lab_p.shape[1]):
            for k in range(lab_p.shape[2]):
                c += lab_p[i, j, k] == 0
        counts[i] = c

@numba.njit(parallel=True, cache=True)
def _number_unknowns(lab_p, starts, index):
    """index[p] = the unknown's row (-1 elsewhere), rows in grid order."""
    n1, n2 = lab_p.shape[1], lab_p.shape[2]
    for i in numba.prange(lab_p.shape[0]):
        c = starts[i]
        for j in range(n1):
            for k in range(n2):
                p = (i * n1 + j) * n2 + k
                if lab_p[i, j, k] == 0:
                    index[p] = c
                    c += 1
                else:
                    index[p] = -1

@numba.njit(cache=True, inline="always")
def _edge(flat_lab, index, data, i, j, k, a, b, c, q, inv_spacing, scale, eps, slot, r, cols, vals, rhs):
    """The edge from unknown (i, j, k) to (a, b, c) (padded flat index q) in ELL slot
    ``slot`` of row r; returns its weight (0 for no edge) and adds seed couplings."""
    lq = flat_lab[q]
    if lq < 0:
        cols[slot, r] = -1  # inactive, or outside the grid
        vals[slot, r] = 0.0
        return 0.0
    g2 = 0.0
    for ch in range(data.shape[3]):
        g = (data[a, b, c, ch] - data[i, j, k, ch]) * inv_spacing
        g2 += g * g
    w = vals.dtype.type(np.exp(scale * g2) + eps)
    cols[slot, r] = index[q]
    vals[slot, r] = -w
    if lq > 0:
        rhs[r, lq - 1] += w
    return w

@numba.njit(parallel=True, cache=True)
def _assemble_rows(lab_p, starts, data, inv_spacing, scale, eps, index, cols, vals, rhs, coupling):
    """The unknowns' rows, one plane of the grid per work item (rows are numbered in
    grid order from ``starts``): six edge weights each (scikit-image's weighting), the
    ELL row in the slot order of :func:`build_unknown_system`, seed couplings."""
    n1, n2 = lab_p.shape[1], lab_p.shape[2]
    s0 = n1 * n2
    flat_lab = lab_p.ravel()
    h0, h1, h2 = inv_spacing[0], inv_spacing[1], inv_spacing[2]
    for ip in numba.prange(1, lab_p.shape[0] - 1):
        r = starts[ip]
        i = ip - 1
        for jp in range(1, n1 - 1):
            j = jp - 1
            for kp in range(1, n2 - 1):
                if lab_p[ip, jp, kp] != 0:
                    continue
                k = kp - 1
                p = (ip * n1 + jp) * n2 + kp
                d = _edge(flat_lab, index, data, i, j, k, i - 1, j, k, p - s0, h0, scale, eps, 0, r, cols, vals,
                          rhs)
                d += _edge(flat_lab, index, data, i, j, k, i + 1, j, k, p + s0, h0, scale, eps, 6, r, cols, vals,
                           rhs)
                d += _edge(flat_lab, index, data, i, j, k, i, j - 1, k, p - n2, h1, scale, eps, 1, r, cols, vals,
                           rhs)
                d += _edge(flat_lab, index, data, i, j, k, i, j + 1, k, p + n2, h1, scale, eps, 5, r, cols, vals,
                           rhs)
                d += _edge(flat_lab, index, data, i, j, k, i, j, k - 1, p - 1, h2, scale, eps, 2, r, cols, vals,
                           rhs)
                d += _edge(flat_lab, index, data, i, j, k, i, j, k + 1, p + 1, h2, scale, eps, 4, r, cols, vals,
                           rhs)
                cols[3, r] = r
                vals[3, r] = d
                acc = 0.0
                for lab in range(rhs.shape[1]):
                    acc += rhs[r, lab]
                coupling[r] = acc
                r += 1
