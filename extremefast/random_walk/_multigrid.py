"""(Tried for issue 35 and not kept: see docs/history.md, "The walker at the memory floor".)

Aggregation multigrid as the preconditioner of the random walker's CG (mode ``'mg'``, CPU).

Jacobi-preconditioned CG needs a number of iterations that grows with the crop's extent
(150-300 on a 128^3 crop of real CT, even on the red-black reduced system): the smooth
part of the error spreads one voxel per iteration. A multigrid V-cycle removes it on
coarser grids, and CG with it converges in 20-40 iterations on the same problems.

Coarse grids by aggregation (unsmoothed, piecewise-constant prolongation P): every level
groups its nodes by the 2x2x2 box of the grid they lie in, and within a box only along
*strong* edges, those whose weight is at least ``THETA`` times the largest weight of the
weaker of its two ends (the strength-of-connection rule of algebraic multigrid, Ruge and
Stueben 1987, applied inside geometric boxes). An organ boundary (weights 1e-7 beside 1)
therefore never falls inside an aggregate, where a piecewise-constant correction would
smear it. The coarse operator is the Galerkin product ``P^T A P``, built in the Laplacian
form: each aggregate's coupling to seeds is the sum of its members', and an edge between
two aggregates weighs the sum of the fine edges between them. No term is a difference, so
the 1e-10 weights survive every level, and every level is again a graph Laplacian with
seed coupling (symmetric positive definite). Levels are made until at most ``COARSEST``
nodes are left, which are solved exactly (sparse LU).

The cycle is a symmetric V(1, 1): on the finest level one red-black Gauss-Seidel sweep
before the coarse correction (red, then black) and the reverse one after it (black, then
red); on the coarse levels (general graphs) one damped Jacobi step before and after. A
Gauss-Seidel half-sweep leaves the residual of the colour it updated at exactly zero, so
the residual before the restriction is only the red half (half a mat-vec). The fine
level runs on the red-black split of :mod:`._redblack` (its blocks: each colour's rows
with their six neighbours numbered in the other colour), in float32 storage with float64
sums, and the outer CG runs on vectors ordered red first, then black.

Costs per CG iteration: one mat-vec, a fine-level work of about two more, and the coarse
levels (a quarter of the fine nodes and less). Set-up: two passes over the fine stencil
(a union-find for the aggregates, one pass for the coarse graph) and smaller ones below.

Fast path: Numba kernels. Plain reference: :func:`aggregates_plain` (SciPy's connected
components of the strong in-box edges), :func:`galerkin_plain` (the sparse product
``P^T A P``) and :func:`vcycle_plain` (the same cycle with SciPy sparse products); the
tests compare each with its kernel.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernels import _CHUNKS, _ordered_sum
from ._redblack import RedBlackSystem, _red_inverse_diagonal

# An edge is strong when its weight is at least THETA x the largest edge weight of the
# weaker of its two ends. Measured on the sarcoma crop STS_004 (default preset): CG with
# the V-cycle reached 1e-4 in 23 iterations at 0.25.
THETA = 0.25
# Levels are made until at most this many nodes are left; those are solved by sparse LU.
COARSEST = 2000
# Damping of the Jacobi smoother on the coarse levels (2/3: the classical choice for a
# Laplacian, whose Jacobi iteration matrix has eigenvalues down to -1).
OMEGA = 2.0 / 3.0
# A level that does not shrink the node count by this factor ends the hierarchy (a grid
# of isolated nodes or one walled-off component per box cannot be aggregated further).
_MIN_SHRINK = 1.5


class _Level:
    """One coarse level: a graph Laplacian ``s_i x_i + sum_j w_ij (x_i - x_j)`` in CSR form
    (float64), with each node's box coordinates and the aggregates of the level above."""

    def __init__(self, indptr, idx, w, s, coords):
        self.indptr, self.idx, self.w, self.s, self.coords = indptr, idx, w, s, coords
        self.n = s.shape[0]
        self.inv_d = np.empty(self.n)
        _csr_inverse_diagonal(indptr, w, s, self.inv_d)
        self.agg = None       # this level's node -> next level's node
        self.members = None   # (indptr, node ids) of each next-level node

    def csr(self):
        """The level as a SciPy CSR matrix (diagonal s + sum w, off-diagonals -w)."""
        import scipy.sparse as sp

        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        off = sp.csr_matrix((-self.w, (rows, self.idx)), shape=(self.n, self.n))
        return (off + sp.diags(1.0 / self.inv_d)).tocsr()


class MultigridSystem(RedBlackSystem):
    """The red-black reduced system of a CPU :class:`~._laplacian.StencilMatrix` (see
    :mod:`._redblack`) as a CG system preconditioned by the black block of one aggregation
    V-cycle of the full system (module doc)."""

    def __init__(self, A, theta=THETA, coarsest=COARSEST):
        if A.unknown is None or A.am.device != "cpu":
            raise ValueError("the multigrid system needs the grid layout of the unknowns, on the CPU")
        super().__init__(A)
        self.inv_diag = None
        self.n_red = int(self.red_rows.size)
        self.inv_Bd = np.empty(self.n)
        _red_inverse_diagonal(self.Bw, self.Bs, self.inv_Bd)
        self.levels, self.coarse_lu = _hierarchy(self, A.unknown, theta, coarsest)

    def precondition(self, f_b):
        """``z_b = E_b^T V E_b f_b``: the black part of one V(1, 1) cycle of the full system on
        the right-hand side (0, f_b), from zero. The pre-smoothing's red half-sweep leaves
        z_r = 0 and its black one z_b = f_b / d_b, after which only the red rows have a
        residual, ``W z_b``; the post-smoothing's black half-sweep overwrites z_b from the
        corrected z_r = P e alone, and its red half-sweep does not change z_b, so it is left
        out. The cycle of the full system is symmetric, so this block of it is too."""
        z_b = np.empty(self.n, dtype=self.dtype)
        _scale(f_b, self.inv_Bd, z_b)
        res_r = np.empty(self.n_red)
        _pull(self.Rc, self.Rw, z_b, res_r)
        rc = np.empty(self.levels[0].n)
        _restrict(self.red_members[0], self.red_members[1], res_r, rc)
        e = self._cycle(0, rc)
        _black_from_coarse(self.Bc, self.Bw, self.inv_Bd, f_b, self.agg_red, e, z_b)
        return z_b

    def _cycle(self, k, f):
        """V-cycle on coarse level k (float64 vectors); on the last level, the LU solve."""
        if k == len(self.levels) - 1:
            return self.coarse_lu.solve(f)
        lv, below = self.levels[k], self.levels[k + 1]
        z = f * (OMEGA * lv.inv_d)
        res = np.empty(lv.n)
        _csr_residual(lv.indptr, lv.idx, lv.w, lv.s, f, z, res)
        rc = np.empty(below.n)
        _restrict(below.members[0], below.members[1], res, rc)
        e = self._cycle(k + 1, rc)
        _prolong(e, lv.agg, z)
        out = np.empty(lv.n)
        _csr_jacobi(lv.indptr, lv.idx, lv.w, lv.s, lv.inv_d, OMEGA, f, z, out)
        return out


def _hierarchy(system, unknown, theta, coarsest):
    """The coarse levels below the split fine level, and the LU factors of the last one."""
    import scipy.sparse.linalg as spla

    s = system
    coords = np.empty((s.n_full, 3), dtype=np.int32)
    _grid_coords(np.ascontiguousarray(unknown), s.red_rows, s.black_rows, coords)
    agg, size = _aggregate_split(s.Rc, s.Rw, s.Bc, s.Bw, coords, theta)
    s.agg_red = agg[:s.n_red].astype(np.int32)
    s.red_members = _members(s.agg_red, size)
    level = _coarse_level(agg, size, coords, _galerkin_split, (s.Rc, s.Rw, s.Rs, s.Bc, s.Bw, s.Bs))
    levels = [level]
    while level.n > coarsest:
        agg, size = _aggregate_csr(level.indptr, level.idx, level.w, level.coords, theta)
        if size * _MIN_SHRINK > level.n:
            break
        level.agg = agg
        level = _coarse_level(agg, size, level.coords, _galerkin_csr, (level.indptr, level.idx, level.w, level.s))
        levels.append(level)
    return levels, spla.splu(levels[-1].csr().tocsc())


def _coarse_level(agg, size, coords, galerkin, fine):
    """The level of the aggregates ``agg`` of a finer one (``fine``: its arrays as
    ``galerkin`` takes them)."""
    members = _members(agg, size)
    indptr, idx, w, s_c = galerkin(*fine, agg, size, *members)
    box = np.empty((size, 3), dtype=np.int32)
    _box_of(agg, coords, box)
    level = _Level(indptr, idx, w, s_c, box)
    level.members = members
    return level


def _members(agg, size):
    """(indptr, nodes): the nodes of each aggregate, in increasing order (a counting sort)."""
    indptr = np.zeros(size + 1, dtype=np.int64)
    nodes = np.empty(agg.shape[0], dtype=np.int64)
    _counting_sort(agg, indptr, nodes)
    return indptr, nodes


# --- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@numba.njit(cache=True)
def _union(parent, a, b):
    a, b = _find(parent, a), _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@numba.njit(cache=True)
def _number(parent):
    """Components numbered 0.. in order of their first node."""
    n = parent.shape[0]
    agg = np.empty(n, dtype=np.int64)
    number = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        root = _find(parent, i)
        if number[root] < 0:
            number[root] = count
            count += 1
        agg[i] = number[root]
    return agg, count


@numba.njit(cache=True)
def _same_box(coords, i, j):
    return (coords[i, 0] >> 1) == (coords[j, 0] >> 1) and (coords[i, 1] >> 1) == (coords[j, 1] >> 1) \
        and (coords[i, 2] >> 1) == (coords[j, 2] >> 1)


@numba.njit(cache=True)
def _aggregate_split(Rc, Rw, Bc, Bw, coords, theta):
    """Aggregates of the split fine level (nodes: red 0..n_red-1, then black): strong
    edges within a 2x2x2 box. Every edge joins a red and a black node, so the red rows
    list each edge once."""
    n_red, n_black = Rc.shape[1], Bc.shape[1]
    big_r = np.zeros(n_red)
    big_b = np.zeros(n_black)
    for i in range(n_red):
        for m in range(6):
            big_r[i] = max(big_r[i], np.float64(Rw[m, i]))
    for i in range(n_black):
        for m in range(6):
            big_b[i] = max(big_b[i], np.float64(Bw[m, i]))
    parent = np.arange(n_red + n_black)
    for i in range(n_red):
        for m in range(6):
            w = np.float64(Rw[m, i])
            if w > 0.0:
                j = Rc[m, i]
                if w >= theta * min(big_r[i], big_b[j]) and _same_box(coords, i, n_red + j):
                    _union(parent, i, n_red + j)
    return _number(parent)


@numba.njit(cache=True)
def _aggregate_csr(indptr, idx, w, coords, theta):
    """Aggregates of a coarse level: strong edges within a 2x2x2 box of its box coordinates."""
    n = indptr.shape[0] - 1
    big = np.zeros(n)
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            big[i] = max(big[i], w[q])
    parent = np.arange(n)
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            j = idx[q]
            if j > i and w[q] >= theta * min(big[i], big[j]) and _same_box(coords, i, j):
                _union(parent, i, j)
    return _number(parent)


@numba.njit(cache=True)
def _grid_coords(unknown, red_rows, black_rows, coords):
    """Grid coordinates of the unknowns in red-black order (rows index the unknowns in grid
    order)."""
    n_red = red_rows.shape[0]
    position = np.empty(red_rows.shape[0] + black_rows.shape[0], dtype=np.int64)
    for q in range(n_red):
        position[red_rows[q]] = q
    for q in range(black_rows.shape[0]):
        position[black_rows[q]] = n_red + q
    row = 0
    for i in range(unknown.shape[0]):
        for j in range(unknown.shape[1]):
            for k in range(unknown.shape[2]):
                if unknown[i, j, k]:
                    q = position[row]
                    coords[q, 0], coords[q, 1], coords[q, 2] = i, j, k
                    row += 1


@numba.njit(cache=True)
def _counting_sort(agg, indptr, nodes):
    """indptr[a]..indptr[a + 1]: where aggregate a's nodes lie in ``nodes``, in increasing order."""
    for i in range(agg.shape[0]):
        indptr[agg[i] + 1] += 1
    for a in range(indptr.shape[0] - 1):
        indptr[a + 1] += indptr[a]
    fill = indptr[:-1].copy()
    for i in range(agg.shape[0]):
        nodes[fill[agg[i]]] = i
        fill[agg[i]] += 1


@numba.njit(cache=True)
def _box_of(agg, coords, box):
    """Each aggregate's box: its members' coordinates halved (all members share it)."""
    for i in range(agg.shape[0]):
        a = agg[i]
        box[a, 0] = coords[i, 0] >> 1
        box[a, 1] = coords[i, 1] >> 1
        box[a, 2] = coords[i, 2] >> 1


@numba.njit(inline="always")
def _add_edge(nb, wt, count, b, w):
    for q in range(count):
        if nb[q] == b:
            wt[q] += w
            return count
    nb[count] = b
    wt[count] = w
    return count + 1


def _galerkin_split(Rc, Rw, Rs, Bc, Bw, Bs, agg, size, m_ptr, m_nodes):
    """``P^T A P`` of the split fine level in the Laplacian form: (indptr, idx, w, s) of the
    coarse graph. Two passes over each aggregate's members, each aggregate on its own (so
    in parallel): count its distinct neighbours, then write them."""
    cap = 6 * int(np.diff(m_ptr).max()) if size else 0
    degree = np.zeros(size + 1, dtype=np.int64)
    s = np.zeros(size)
    no_idx, no_w = np.empty(0, dtype=np.int32), np.empty(0)
    _galerkin_split_pass(Rc, Rw, Rs, Bc, Bw, Bs, agg, m_ptr, m_nodes, cap, degree, s, no_idx, no_w, False)
    indptr = np.concatenate([[0], np.cumsum(degree[:size])])
    idx, w = np.empty(indptr[-1], dtype=np.int32), np.empty(indptr[-1])
    _galerkin_split_pass(Rc, Rw, Rs, Bc, Bw, Bs, agg, m_ptr, m_nodes, cap, indptr, s, idx, w, True)
    return indptr, idx, w, s


def _galerkin_csr(indptr_f, idx_f, w_f, s_f, agg, size, m_ptr, m_nodes):
    """:func:`_galerkin_split` for a coarse level in CSR form."""
    cap = int(_largest_reach(indptr_f, m_ptr, m_nodes)) if size else 0
    degree = np.zeros(size + 1, dtype=np.int64)
    s = np.zeros(size)
    no_idx, no_w = np.empty(0, dtype=np.int32), np.empty(0)
    _galerkin_csr_pass(indptr_f, idx_f, w_f, s_f, agg, m_ptr, m_nodes, cap, degree, s, no_idx, no_w, False)
    indptr = np.concatenate([[0], np.cumsum(degree[:size])])
    idx, w = np.empty(indptr[-1], dtype=np.int32), np.empty(indptr[-1])
    _galerkin_csr_pass(indptr_f, idx_f, w_f, s_f, agg, m_ptr, m_nodes, cap, indptr, s, idx, w, True)
    return indptr, idx, w, s


@numba.njit(parallel=True, cache=True)
def _largest_reach(indptr_f, m_ptr, m_nodes):
    """The most fine edges any aggregate's members have."""
    size = m_ptr.shape[0] - 1
    reach = np.zeros(size, dtype=np.int64)
    for a in numba.prange(size):
        for q in range(m_ptr[a], m_ptr[a + 1]):
            reach[a] += indptr_f[m_nodes[q] + 1] - indptr_f[m_nodes[q]]
    return reach.max()


@numba.njit(parallel=True, cache=True)
def _galerkin_split_pass(Rc, Rw, Rs, Bc, Bw, Bs, agg, m_ptr, m_nodes, cap, where, s, idx, w_out, write):
    """Counting pass (``where`` gets each aggregate's degree, ``s`` its coupling) or writing
    pass (``where`` is the coarse indptr)."""
    n_red = Rc.shape[1]
    size = m_ptr.shape[0] - 1
    step = (size + _CHUNKS - 1) // _CHUNKS
    for ch in numba.prange(_CHUNKS):
        nb = np.empty(cap, dtype=np.int64)
        wt = np.empty(cap)
        for a in range(ch * step, min(size, (ch + 1) * step)):
            count = 0
            total = 0.0
            for q in range(m_ptr[a], m_ptr[a + 1]):
                node = m_nodes[q]
                red = node < n_red
                total += np.float64(Rs[node]) if red else np.float64(Bs[node - n_red])
                for m in range(6):
                    if red:
                        w, other = np.float64(Rw[m, node]), n_red + np.int64(Rc[m, node])
                    else:
                        w, other = np.float64(Bw[m, node - n_red]), np.int64(Bc[m, node - n_red])
                    if w > 0.0 and agg[other] != a:
                        count = _add_edge(nb, wt, count, agg[other], w)
            _emit(a, count, total, nb, wt, where, s, idx, w_out, write)


@numba.njit(parallel=True, cache=True)
def _galerkin_csr_pass(indptr_f, idx_f, w_f, s_f, agg, m_ptr, m_nodes, cap, where, s, idx, w_out, write):
    """:func:`_galerkin_split_pass` for a coarse level in CSR form."""
    size = m_ptr.shape[0] - 1
    step = (size + _CHUNKS - 1) // _CHUNKS
    for ch in numba.prange(_CHUNKS):
        nb = np.empty(cap, dtype=np.int64)
        wt = np.empty(cap)
        for a in range(ch * step, min(size, (ch + 1) * step)):
            count = 0
            total = 0.0
            for q in range(m_ptr[a], m_ptr[a + 1]):
                node = m_nodes[q]
                total += s_f[node]
                for e in range(indptr_f[node], indptr_f[node + 1]):
                    b = agg[idx_f[e]]
                    if b != a:
                        count = _add_edge(nb, wt, count, b, w_f[e])
            _emit(a, count, total, nb, wt, where, s, idx, w_out, write)


@numba.njit(inline="always")
def _emit(a, count, total, nb, wt, where, s, idx, w_out, write):
    if write:
        for q in range(count):
            idx[where[a] + q] = nb[q]
            w_out[where[a] + q] = wt[q]
    else:
        where[a] = count
        s[a] = total


@numba.njit(parallel=True, cache=True)
def _csr_inverse_diagonal(indptr, w, s, out):
    for i in numba.prange(out.shape[0]):
        d = s[i]
        for q in range(indptr[i], indptr[i + 1]):
            d += w[q]
        out[i] = 1.0 / d


@numba.njit(parallel=True, cache=True)
def _csr_residual(indptr, idx, w, s, f, z, out):
    """out = f - A z on a coarse level (A z = s z + sum w (z_i - z_j))."""
    for i in numba.prange(out.shape[0]):
        zi = z[i]
        az = s[i] * zi
        for e in range(indptr[i], indptr[i + 1]):
            az += w[e] * (zi - z[idx[e]])
        out[i] = f[i] - az


@numba.njit(parallel=True, cache=True)
def _restrict(m_ptr, m_nodes, res, out):
    """out[a] = the sum of res over a's members (P^T res)."""
    for a in numba.prange(out.shape[0]):
        acc = 0.0
        for q in range(m_ptr[a], m_ptr[a + 1]):
            acc += res[m_nodes[q]]
        out[a] = acc


@numba.njit(parallel=True, cache=True)
def _scale(f, inv_d, out):
    for i in numba.prange(out.shape[0]):
        out[i] = f[i] * inv_d[i]


@numba.njit(parallel=True, cache=True)
def _pull(C, W, z_other, out):
    """out = sum_m W z_other[C] (float64 sums)."""
    for i in numba.prange(out.shape[0]):
        acc = 0.0
        for m in range(6):
            acc += np.float64(W[m, i]) * z_other[C[m, i]]
        out[i] = acc


@numba.njit(parallel=True, cache=True)
def _csr_jacobi(indptr, idx, w, s, inv_d, omega, f, z, out):
    """out = z + omega (f - A z) / d: one damped Jacobi step on a coarse level."""
    for i in numba.prange(out.shape[0]):
        zi = z[i]
        az = s[i] * zi
        for e in range(indptr[i], indptr[i + 1]):
            az += w[e] * (zi - z[idx[e]])
        out[i] = zi + omega * inv_d[i] * (f[i] - az)


@numba.njit(parallel=True, cache=True)
def _black_from_coarse(Bc, Bw, inv_Bd, f_b, agg_red, e, z_b):
    """z_b = (f_b + W^T z_r) / d_b with z_r = e[agg_red] (the black half-sweep after the
    coarse correction), summed in float64."""
    for i in numba.prange(z_b.shape[0]):
        acc = np.float64(f_b[i])
        for m in range(6):
            acc += np.float64(Bw[m, i]) * e[agg_red[Bc[m, i]]]
        z_b[i] = acc * inv_Bd[i]





@numba.njit(parallel=True, cache=True)
def _prolong(e, agg, z):
    for i in numba.prange(z.shape[0]):
        z[i] += e[agg[i]]
