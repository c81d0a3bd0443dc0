"""The plain reference of :func:`._cg.conjugate_gradient`: textbook Jacobi-preconditioned CG on a
SciPy sparse matrix, one line per step of the algorithm (Saad, *Iterative Methods for Sparse
Linear Systems*, 2nd ed., Algorithm 9.1), slow and readable. The tests compare the fast driver
(compiled and array-module steps, the red-black system) with it."""
from __future__ import annotations

import numpy as np


def jacobi_cg(A, b, tol: float, maxiter: int) -> np.ndarray:
    """``x`` with ``||b - A x|| <= tol ||b||`` (or after ``maxiter`` steps), from ``x = 0``.

    Parameters
    ----------
    A : scipy.sparse matrix, (n, n), symmetric positive definite
    b : ndarray, (n,)
    tol : float
    maxiter : int

    Returns
    -------
    ndarray, (n,)
    """
    inv = 1.0 / A.diagonal()
    x = np.zeros_like(b)
    r = b.copy()
    z = inv * r
    p = z.copy()
    rz = r @ z
    for _ in range(maxiter):
        if np.linalg.norm(r) <= tol * np.linalg.norm(b):
            break
        ap = A @ p
        alpha = rz / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        z = inv * r
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p
    return x
