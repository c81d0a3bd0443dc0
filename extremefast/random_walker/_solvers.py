"""Solvers for the random walker's SPD system, in SciPy's calling convention.

``solve(A, b, x0=None, *, tol, maxiter, M=None) -> (x, info)`` with ``info = 0`` on
convergence and the iteration count otherwise. :func:`cg` is written against the array
module (numpy or cupy); the convergence test costs a device-to-host copy, so it runs
every ``check_every`` iterations only.
"""
from __future__ import annotations

import numpy as np


def cg(am, A, b, x0=None, *, tol=1e-3, maxiter=None, M=None, check_every=1):
    """Preconditioned conjugate gradients; stops when ||b - A x|| <= tol * ||b||."""
    xp = am.xp
    n = b.shape[0]
    maxiter = int(maxiter or 10 * n)
    x = xp.zeros_like(b) if x0 is None else x0.astype(b.dtype, copy=True)
    r = b - A @ x if x0 is not None else b.copy()
    bnorm = float(xp.linalg.norm(b))
    if bnorm == 0.0:
        return xp.zeros_like(b), 0
    threshold = tol * bnorm
    if float(xp.linalg.norm(r)) <= threshold:
        return x, 0
    z = M(r) if M is not None else r
    p = z.copy()
    rz = xp.vdot(r, z)
    for it in range(1, maxiter + 1):
        Ap = A @ p
        alpha = rz / xp.vdot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        if it % check_every == 0 and float(xp.linalg.norm(r)) <= threshold:
            return x, 0
        z = M(r) if M is not None else r
        rz_new = xp.vdot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, maxiter


def batched_jacobi_cg(am, A, b, case, ncases, *, tol=1e-3, x0=None, check_every=1, maxiter=None):
    """Jacobi-CG on a block-diagonal stack of independent systems (see
    :func:`~extremefast.random_walker._laplacian.stack_systems`), with each case's own step
    lengths: per-case dot products are segmented sums (``bincount`` with weights), so the
    iterates are those of separate solves while every kernel serves all cases. A case
    stops moving (step length 0) once ||b_c - A_c x_c|| <= tol ||b_c||, tested every
    ``check_every`` iterations. Returns (x, converged) with ``converged`` a host bool
    array, one per case.
    """
    xp = am.xp
    n = b.shape[0]
    maxiter = int(maxiter or 10 * max(n, 1))

    def segment_dot(u, v):
        return xp.bincount(case, weights=(u * v).astype(np.float64), minlength=ncases)

    inv_diag = 1.0 / A.diagonal()
    x = xp.zeros_like(b) if x0 is None else x0.astype(b.dtype, copy=True)
    r = b - A @ x if x0 is not None else b.copy()
    threshold = tol * tol * segment_dot(b, b)
    active = segment_dot(r, r) > threshold
    z = inv_diag * r
    p = z.copy()
    rz = segment_dot(r, z)
    for it in range(1, maxiter + 1):
        if (it - 1) % check_every == 0 and not bool(active.any()):  # one small device-to-host copy
            break
        Ap = A @ p
        pAp = segment_dot(p, Ap)
        alpha = xp.where(active & (pAp > 0), rz / xp.where(pAp > 0, pAp, 1.0), 0.0)
        step = alpha[case].astype(b.dtype)
        x += step * p
        r -= step * Ap
        z = inv_diag * r
        rz_new = segment_dot(r, z)
        beta = xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta[case].astype(b.dtype) * p
        rz = rz_new
        if it % check_every == 0:
            active = active & (segment_dot(r, r) > threshold)
    converged = ~am.to_numpy(active & (segment_dot(r, r) > threshold))
    return x, converged


def jacobi_preconditioner(am, A):
    inv_diag = 1.0 / A.diagonal()
    return lambda r: inv_diag * r


class PyamgSolver:
    """Smoothed-aggregation AMG (pyamg) as a CG preconditioner; the hierarchy is built once
    and reused for every right-hand side."""

    def __init__(self, A):
        import pyamg

        self.A = A
        self.ml = pyamg.smoothed_aggregation_solver(
            A, symmetry="hermitian", strength=("symmetric", {"theta": 0.0}),
            smooth=("jacobi", {"omega": 4.0 / 3.0}), max_coarse=500,
            presmoother=("block_gauss_seidel", {"sweep": "symmetric"}),
            postsmoother=("block_gauss_seidel", {"sweep": "symmetric"}),
        )

    def solve(self, b, x0=None, *, tol=1e-3, maxiter=200):
        residuals = []
        x = self.ml.solve(b, x0=x0, tol=tol, maxiter=maxiter, accel="cg", residuals=residuals)
        bnorm = np.linalg.norm(b) or 1.0
        info = 0 if residuals and residuals[-1] <= tol * bnorm * (1 + 1e-9) else len(residuals)
        return x, info
