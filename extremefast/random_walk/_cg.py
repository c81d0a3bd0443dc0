"""The one conjugate-gradient driver of the random walker, with its systems and steps.

:func:`conjugate_gradient` runs preconditioned CG on a *system* (what is solved) with
*steps* (how vectors are updated):

- systems: :class:`PreconditionedSystem` (the full unknowns' block with a Jacobi, identity or
  pyamg preconditioner: scikit-image's ``cg_j``, ``cg`` and ``cg_mg``) and :class:`~._redblack.RedBlackSystem` (the black Schur
  complement). A system gives ``apply_dot(p, out) -> p . A p``, ``inv_diag`` (or None and
  a ``precondition`` function), and ``reduce`` / ``restrict`` / ``expand`` between the
  full vectors and its own;
- steps: :class:`CompiledSteps` (fused Numba kernels, host scalars: the CPU default),
  :class:`ArraySteps` (array operations, scalars left on the device: numpy in the tests,
  CuPy on a GPU) and :class:`BatchedSteps` (a block-diagonal stack of cases, each with its
  own step lengths and stopping test).

It stops when ``||b - A x|| <= tol ||b||`` (scikit-image's test, on the full system), when
``maxiter`` is spent, or when the iteration breaks down: a non-positive or non-finite
curvature ``p . A p``, a non-finite residual, or a residual grown ``_GROWTH`` times past
the initial one (in exact arithmetic CG on an SPD system cannot do any of these; in
floating point they mean the computed operator is not SPD). SciPy's return convention:
``(x, info)`` with info 0 on convergence, the iteration count when ``maxiter`` ran out,
and -1 on breakdown.
"""
from __future__ import annotations

import math

import numpy as np

from ._kernels import _direction, _dot, _matvec_dot, _update

BREAKDOWN = -1
# ||r|| grown 1e4 times past ||r_0||: CG residuals oscillate on ill-conditioned systems, so
# the bound is wide; the divergent float32 solves reported on real CT reached probabilities
# of 1e5-1e7, far past it. (Chosen, not yet measured on the whole real battery.)
_GROWTH = 1e8  # on r . r


def conjugate_gradient(system, b, x0=None, *, tol, maxiter, check_every=1):
    """Solve ``A x = b`` for the full system behind ``system``; returns ``(x, info)``.

    ``check_every``: iterations between convergence tests (each test is a device-to-host
    copy with array steps on a GPU).
    """
    # One function of ~50 lines on purpose: the textbook iteration (Saad, Algorithm 9.1) reads
    # best in one piece beside its reference, _cg_ref.jacobi_cg.
    steps = system.steps
    xp = steps.xp
    dtype = system.dtype
    b = xp.ascontiguousarray(xp.asarray(b, dtype=dtype))
    bnorm2 = steps.dot(b, b)
    if steps.all_zero(bnorm2):
        return xp.zeros(b.shape[0], dtype=dtype), 0
    threshold2 = tol * tol * bnorm2
    c = system.reduce(b)
    if x0 is None:
        x = xp.zeros(system.n, dtype=dtype)
        r = c.copy()
    else:
        x = system.restrict(x0)
        sx = xp.empty_like(x)
        system.apply_dot(x, sx)
        r = c - sx
    inv = system.inv_diag
    z = r * inv if inv is not None else system.precondition(r)
    p = z.copy()
    sp = xp.empty_like(p)
    rz = steps.dot(r, z)
    rr0 = steps.dot(r, r)
    info = 0 if steps.converged(rr0, threshold2) else maxiter
    it = 0
    while info > 0 and it < maxiter:
        it += 1
        pap = system.apply_dot(p, sp)
        if steps.curvature_fails(pap):  # at once with host scalars; else kept until a test
            info = BREAKDOWN
            break
        alpha = steps.ratio(rz, pap)
        check = it % check_every == 0 or it == maxiter
        if inv is not None:
            rz_new, rr = steps.update(x, r, p, sp, inv, alpha, z, check)
        else:
            rr = steps.axpy(x, r, p, sp, alpha, check)
            z = system.precondition(r)
            rz_new = steps.dot(r, z)
        if check:
            if steps.broke_down() or steps.diverged(rr, rr0):
                info = BREAKDOWN
                break
            if steps.converged(rr, threshold2):
                info = 0
                break
        steps.direction(p, z, steps.ratio(rz_new, rz))
        rz = rz_new
    return system.expand(x, b), info


class PreconditionedSystem:
    """The full unknowns' block ``A`` (a :class:`StencilMatrix`) as a CG system.

    ``preconditioner``: "jacobi" (1 / diag A: scikit-image's ``cg_j``), "none" (plain CG,
    ``cg``) or a callable ``r -> z`` (pyamg's V-cycle for ``cg_mg``). ``generic`` uses the
    array-module steps on the CPU too (the tests' check of the GPU path).
    """

    def __init__(self, A, preconditioner="jacobi", generic=False):
        self.A = A
        self.am = A.am
        self.dtype = np.dtype(A.vals.dtype)
        self.n = A.shape[0]
        self.compiled = A.am.device == "cpu" and not generic
        self.steps = CompiledSteps(self.dtype) if self.compiled else ArraySteps(self.am.xp, self.dtype)
        xp = self.am.xp
        if callable(preconditioner):
            self.inv_diag, self.precondition = None, preconditioner
        elif preconditioner == "none":
            self.inv_diag = xp.ones(self.n, dtype=self.dtype)
        else:
            self.inv_diag = (1.0 / A.diagonal().astype(np.float64)).astype(self.dtype)

    def apply_dot(self, p, out):
        A = self.A
        if self.compiled:
            return _matvec_dot(A.cols, A.vals, A.coupling, p, out)
        out[...] = A @ p
        return self.steps.dot(p, out)

    def reduce(self, b):
        return b

    def restrict(self, x0):
        return self.steps.xp.array(x0, dtype=self.dtype)

    def expand(self, x, b):
        return x


class CompiledSteps:
    """The CG vector steps as fused Numba kernels (CPU); scalars are host floats."""

    host_scalars = True
    xp = np

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def dot(self, a, b):
        return _dot(a, b)

    @staticmethod
    def curvature_fails(pap) -> bool:
        """``p . A p`` not positive and finite: the operator is not SPD (tested at once)."""
        return not (pap > 0.0 and math.isfinite(pap))

    @staticmethod
    def broke_down() -> bool:
        return False  # curvature_fails has said so already

    def ratio(self, num, den):
        return self.dtype.type(num / den)

    def update(self, x, r, p, sp, inv, alpha, z, with_rr):
        """(r . z, r . r) after the step, from one fused pass (which gives r . r at no cost, so
        ``with_rr`` is not needed here)."""
        return _update(x, r, p, sp, inv, alpha, z)

    def axpy(self, x, r, p, sp, alpha, with_rr):
        x += alpha * p
        r -= alpha * sp
        return _dot(r, r)

    def direction(self, p, z, beta):
        _direction(p, z, beta)

    @staticmethod
    def all_zero(v):
        return v == 0.0

    @staticmethod
    def converged(rr, threshold2):
        return rr <= threshold2

    @staticmethod
    def diverged(rr, rr0):
        return not math.isfinite(rr) or rr > _GROWTH * rr0


class ArraySteps:
    """The same steps as array operations: scalars stay 0-d device arrays (no host copy
    but at the convergence tests), and a zero denominator gives a zero step (a residual
    that reached exactly 0 between two tests)."""

    host_scalars = False

    def __init__(self, xp, dtype):
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.bad_curvature = xp.zeros((), dtype=bool)

    def dot(self, a, b):
        return self.xp.vdot(a.astype(np.float64), b.astype(np.float64))

    def curvature_fails(self, pap) -> bool:
        """Note a negative or non-finite ``p . A p`` on the device (no host copy); :meth:`broke_down`
        reports it at the next convergence test. A zero curvature is a zero step (see :meth:`ratio`)."""
        self.bad_curvature = self.bad_curvature | self._bad(pap)
        return False

    def _bad(self, pap):
        return (pap < 0) | ~self.xp.isfinite(pap)

    def broke_down(self) -> bool:
        return bool(self.bad_curvature.any())

    def ratio(self, num, den):
        xp = self.xp
        return xp.where(den != 0, num / xp.where(den != 0, den, 1), 0).astype(self.dtype)

    def update(self, x, r, p, sp, inv, alpha, z, with_rr):
        """(r . z, r . r) after the step; r . r only when ``with_rr`` (a convergence test)."""
        rr = self.axpy(x, r, p, sp, alpha, with_rr)
        self.xp.multiply(r, inv, out=z)
        return self.dot(r, z), rr

    def axpy(self, x, r, p, sp, alpha, with_rr):
        x += alpha * p
        r -= alpha * sp
        return self.dot(r, r) if with_rr else None

    def direction(self, p, z, beta):
        p *= beta
        p += z

    @staticmethod
    def all_zero(v):
        return float(v) == 0.0

    @staticmethod
    def converged(rr, threshold2):
        return float(rr) <= float(threshold2)

    @staticmethod
    def diverged(rr, rr0):
        rr, rr0 = float(rr), float(rr0)
        return not math.isfinite(rr) or rr > _GROWTH * rr0


class BatchedSteps(ArraySteps):
    """Array steps on a block-diagonal stack of independent systems: dot products are
    per-case segmented sums (``bincount`` with weights), step lengths per case, and a case
    stops moving (step 0) once its own residual passes its test, so the iterates are
    those of separate solves while every kernel serves all cases."""

    def __init__(self, xp, dtype, case, ncases):
        super().__init__(xp, dtype)
        self.case, self.ncases = case, ncases
        self.active = xp.ones(ncases, dtype=bool)

    def _bad(self, pap):
        return self.active & ((pap < 0) | ~self.xp.isfinite(pap))  # per case; a finished case may read 0

    def dot(self, a, b):
        return self.xp.bincount(self.case, weights=a.astype(np.float64) * b.astype(np.float64),
                                minlength=self.ncases)

    def ratio(self, num, den):
        xp = self.xp
        ok = self.active & (den > 0)
        return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)[self.case].astype(self.dtype)

    def all_zero(self, v):
        return not bool((v != 0).any())

    def converged(self, rr, threshold2):
        self.active = self.active & (rr > threshold2)
        return not bool(self.active.any())  # one small device-to-host copy

    def diverged(self, rr, rr0):
        xp = self.xp
        return bool((~xp.isfinite(rr) | (rr > _GROWTH * rr0)).any())
