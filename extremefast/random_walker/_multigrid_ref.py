"""Plain reference of the multigrid V-cycle in ``_multigrid.py``, with scipy.sparse.

Same algorithm, written for reading: aggregation matrices ``P`` of 2x2x2 grid blocks,
Galerkin products ``P^T A P``, red-black Gauss-Seidel by matrix splitting, identity rows
where a coarse node holds no unknown, a dense solve on the coarsest level. Slow; tests
compare the compiled preconditioner with it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._multigrid import _COARSEST


def _blocks(coords, shape):
    """Coarse block (flat index) of each grid coordinate (3, n), and the coarse shape."""
    cshape = tuple((s + 1) // 2 for s in shape)
    return np.ravel_multi_index(coords // 2, cshape), cshape


def build_hierarchy(A0, unknown):
    """[(A, colours, P)] from the unknowns' matrix to the coarsest grid (P None there)."""
    coords = np.array(np.nonzero(unknown))
    n = coords.shape[1]
    block, shape = _blocks(coords, unknown.shape)
    P = sp.csr_matrix((np.ones(n), (np.arange(n), block)), shape=(n, int(np.prod(shape))))
    levels = [(sp.csr_matrix(A0, dtype=np.float64), coords.sum(axis=0) % 2, P)]
    A = (P.T @ levels[0][0] @ P).tocsr()
    present = (P.T @ np.ones(n)) > 0
    while True:
        grid = np.indices(shape).reshape(3, -1)
        A_id = (A + sp.diags((~present).astype(float))).tocsr()
        colours = grid.sum(axis=0) % 2
        if A.shape[0] <= _COARSEST or min(shape) <= 2:
            levels.append((A_id, colours, None))
            return levels
        block, cshape = _blocks(grid, shape)
        P = sp.csr_matrix((np.ones(grid.shape[1]), (np.arange(grid.shape[1]), block)),
                          shape=(grid.shape[1], int(np.prod(cshape))))
        levels.append((A_id, colours, P))
        A = (P.T @ A @ P).tocsr()
        present = (P.T @ present.astype(float)) > 0
        shape = cshape


def _gauss_seidel(A, b, x, colours, colour):
    rows = colours == colour
    x[rows] += (b[rows] - (A @ x)[rows]) / A.diagonal()[rows]
    return x


def v_cycle(levels, b, omega=1.4, k=0):
    """The preconditioner ``M^{-1} b`` (k = 0); on a coarse level k, omega times its V-cycle."""
    A, colours, P = levels[k]
    if P is None:
        return omega * np.linalg.solve(A.toarray(), b)
    x = np.zeros_like(b)
    x = _gauss_seidel(A, b, x, colours, 0)
    x = _gauss_seidel(A, b, x, colours, 1)
    x = x + P @ v_cycle(levels, P.T @ (b - A @ x), omega, k + 1)
    x = _gauss_seidel(A, b, x, colours, 1)
    x = _gauss_seidel(A, b, x, colours, 0)
    return x if k == 0 else omega * x
