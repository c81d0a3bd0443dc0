"""Random walker segmentation (Grady 2006), a drop-in for scikit-image's ``random_walker``."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..xp import array_module, has_module, resolve_device
from ._coarse import CoarseSpace
from ._cg import BREAKDOWN, BatchedSteps, PreconditionedSystem, conjugate_gradient
from ._laplacian import assemble_cpu, build_unknown_system, edge_weights, stack_systems
from ._redblack import RedBlackSystem
from ._seeds import full_probabilities, label_values, output_codes, preprocess
from ._solvers import direct_solve, ruge_stuben_preconditioner

MODES = ("auto", "rb", "cg_j", "cg_mg", "cg", "bf")
# From _DIRECT to this many unknowns every mode solves every label's column in float64, as
# scikit-image does, so small images get scikit-image's answer (and its warnings) to rounding; the
# whole solve then takes milliseconds. Above it, 'auto', 'rb' and 'cg_j' store the system in
# float32 (with float64 sums, see _kernels) and solve K - 1 columns, the last being 1 - their sum.
_SMALL = 2**15
# At most this many unknowns, every mode solves exactly (sparse LU, float64, every column): no
# iterate to be wrong. A Jacobi-CG stopped at tol 1e-3 on such a system can be far off where
# weights of 1e-10 wall voxels in: on scikit-image's 7x7 test problem (14 unknowns) it gives -0.53
# at a voxel whose exact value is 0.4965. Cost at the top of the band: a random 16^3 image with
# two seeded faces (3,584 unknowns) takes 56 ms exact against 16 ms by Jacobi-CG, whose answer
# leaves [0, 1] there.
_DIRECT = 2**12
# The red-black solve at half the tolerance: its largest error then stays below Jacobi-CG's
# at the requested tol for ~13% more iterations (benchmarks/bench_random_walker.py).
_RB_TOL_FACTOR = 0.5
# Above 2**15 unknowns 'rb' and 'cg_j' start from the coarse solution of the strong
# components (``_coarse``), iterate to this fraction of tol and end with the coarse
# correction: on the real battery (benchmarks/bench_rw_real.py) CG at tol alone left up to
# 1.1% of labels off the float64 reference, and the corrected solve at tol / 10 within
# the 0.1% the tests ask for.
_COARSE_TOL_FACTOR = 0.1
# scikit-image's cg_mg iteration cap (its V-cycle reaches tol 1e-3 in a few iterations).
_CG_MG_MAXITER = 30


def random_walker(data, labels, beta=130, mode=None, tol=1.0e-3, copy=True, return_full_prob=False,
                  spacing=None, *, prob_tol=1e-3, channel_axis=None, device="auto", x0=None, maxiter=None):
    """Random walker segmentation from seeds: scikit-image's interface and answer, faster.

    Parameters
    ----------
    data : (M, N[, P][, C]) array
        Image to segment, 2D or 3D; integer and boolean images are scaled to [0, 1] as
        scikit-image does (``img_as_float``).
    labels : (M, N[, P]) array of ints (or floats holding labels)
        Seeds: positive values are labels, 0 is unknown, negative values are inactive
        pixels removed from the graph.
    beta : float
        Diffusion penalty; edge weights are ``exp(-beta / (10 * std(data)) * grad^2) + 1e-10``.
    mode : {None, 'auto', 'rb', 'cg_j', 'cg_mg', 'cg', 'bf'}
        Solver. At most 2**12 unknowns every mode solves exactly ('bf'), the answer a stopped
        iteration only approaches. Above, scikit-image's four keep their meaning: 'bf' a direct
        sparse LU solve (small problems), 'cg' unpreconditioned conjugate gradients (slow),
        'cg_j' Jacobi-preconditioned CG (scikit-image's default; compiled kernels here), 'cg_mg'
        CG preconditioned by pyamg's Ruge-Stueben V-cycle (CPU; without pyamg it warns and runs
        'cg_j', as scikit-image does). 'rb' eliminates every other voxel of the grid (red-black
        ordering) and runs Jacobi-CG on the other half: about 60% of the iterations of 'cg_j',
        each costing about one mat-vec. None/'auto': 'cg_j' below 2**15 unknowns (scikit-image's
        default, to rounding), else 'rb' on the CPU and 'cg_j' on a GPU, the fastest measured
        (benchmarks/bench_random_walker.py on a phantom crop; bench_rw_real.py on real ones). A
        geometric multigrid V-cycle was no faster than 'rb' at the same largest error on phantom
        crops and took 22 s on a real abdominal crop where 'cg_j' took 2.4 s, so it was removed;
        an aggregation multigrid preconditioner (strong edges inside 2x2x2 boxes) cut the
        iterations 2.6- to 8.5-fold on real crops but cost four to six times as much per
        iteration, and won only on the largest (docs/history.md). 'cg_mg' stays for scikit-image's users.
    tol : float
        Relative residual tolerance of each iterative solve: ``||b - A x|| <= tol ||b||``.
    copy : bool
        Kept for compatibility; ``labels`` is never modified.
    return_full_prob : bool
        Return the probability of every label, shape (nlabels, *labels.shape), instead
        of the most probable label.
    spacing : sequence of float, optional
        Voxel size per spatial axis; gradients are divided by it.
    prob_tol : float
        Warn when a probability falls outside [-prob_tol, 1 + prob_tol].
    channel_axis : int, optional
        Axis of ``data`` holding channels.
    device : {'auto', 'cpu', 'cuda'}
        Where the system is assembled and solved. 'auto' (the default) is the GPU when
        CuPy sees one, except for 'cg_mg' (CPU only).
    x0 : array, optional
        Initial guess, the previous probabilities of label 1 (same shape as labels);
        warm-starts the iterative solve.
    maxiter : int, optional
        Iteration cap of each iterative solve. Default: scikit-image's ``10 n`` below
        2**15 unknowns, else ``_ITERATIONS_PER_AXIS_VOXEL`` (20) times the summed grid
        extent.

    Returns
    -------
    out : ndarray
        As scikit-image returns it: labels of the same dtype and shape as ``labels``
        (positive values renumbered 1..K in increasing order, negative values -M..-1, unknown
        voxels no seed can reach 0) or, with ``return_full_prob``, float64 probabilities of
        shape (nlabels, *labels.shape). With no unknown voxel, or none a seed can reach,
        scikit-image's pass-through answer (with its warning).

    Warns
    -----
    UserWarning
        scikit-image's warnings, with their leading words unchanged for users who filter on
        them: "The probability range is outside [0, 1]", "Conjugate gradient convergence
        to tolerance not achieved", '"cg" mode may be slow', '"cg_mg" not available',
        "Returning provided labels", "All unlabeled pixels are isolated".
    RuntimeWarning
        A float32 solve broke down and was solved again in float64.

    Notes
    -----
    With ``x`` the probabilities of the unknown voxels, the Dirichlet problem is
    ``L_U x = -B^T m`` (Grady 2006, eq. 4 of Roth et al.). The unknowns' block is assembled
    directly in a 7-column form. Every iterative solve runs one CG driver that stops on
    convergence, on its iteration cap, or on a breakdown (non-positive curvature,
    non-finite or exploding residual); a float32 solve that breaks down is solved again in
    float64 by Jacobi-CG, with a warning, and no answer is clipped to hide a failure.

    Regions joined to the rest only by weak edges (real CT at high beta) carry an error the
    residual test cannot see. 'rb' (above 2**12 unknowns) and 'cg_j' (above 2**15) therefore
    start from the coarse solution of the graph's strongly linked components, iterate to
    ``tol / 10`` and end with the coarse (Galerkin) correction (``_coarse``); on the real
    battery of benchmarks/bench_rw_real.py that keeps every label within 0.04% of a tight
    float64 reference and every probability within ``prob_tol`` of [0, 1]. From 2**12 to
    2**15 unknowns the default keeps scikit-image's answer, warnings included; at most
    2**12, every mode gives the exact one.

    Where scikit-image is wrong, this function is not: when a seed has no active
    neighbour, scikit-image renumbers the graph's edges but not its nodes, and solves a
    system misaligned with the seeds; here the system is the graph's.

    References
    ----------
    L. Grady, "Random walks for image segmentation", IEEE TPAMI 28(11), 2006.
    """
    mode, device = _resolve_mode(mode, device)
    _check_solver_args(beta, tol, maxiter)
    problem = _prepare(data, labels, spacing, channel_axis, x0)
    if not isinstance(problem, _Problem):
        return _passthrough(np.asarray(labels), problem, return_full_prob)
    am = array_module(device)
    X, unknown = _solve_problem(am, problem, beta, mode, tol, maxiter, prob_tol)
    _check_range(X, prob_tol)
    return _finish(problem, X, unknown, return_full_prob)


def random_walker_batch(data, labels, beta=130, tol=1.0e-3, spacing=None, *, prob_tol=1e-3, channel_axis=None,
                        device="auto", x0=None, check_every=10):
    """Random walker for several images at once: a list of probabilities, each as
    ``random_walker(data[i], labels[i], ..., return_full_prob=True)`` returns it.

    On a GPU the cases' systems are stacked into one and solved by one Jacobi-CG with
    per-case step lengths (per-case dot products by segmented sums), so every kernel
    launch and every convergence check serves all cases; a case stops moving once its own
    residual is below ``tol / 10``, tested every ``check_every`` iterations (each test is
    one small device-to-host copy), and the stack starts from and ends with the coarse
    correction of its strong components (``_coarse``; they never cross cases). A case of at
    most 2**12 unknowns is solved exactly, alone. On the CPU each case is solved in turn by
    ``mode='rb'``, which is faster there. ``data``,
    ``labels``, ``spacing`` (one for all or one per case) and ``x0`` (None or one per case,
    each None or the previous probability of label 1) follow :func:`random_walker`.

    Parameters
    ----------
    data : list of array_like
        The images, each as ``random_walker``'s ``data``.
    labels : list of array_like
        Their seed arrays (0 unknown, 1..n labels, negative inactive).
    beta, tol, prob_tol, channel_axis : as :func:`random_walker`, the same for every case.
    spacing : sequence of float, or list of them, optional
        One voxel size for all cases or one per case.
    device : {"auto", "cpu", "cuda"}
        Where to solve; "auto" takes the GPU when CuPy sees one.
    x0 : list, optional
        Per case None or a previous probability of label 1 to start from.
    check_every : int
        Iterations between convergence checks on the GPU.

    Returns
    -------
    list of ndarray
        Per case the probabilities of every label, shape ``(n_labels, *image.shape)``.
    """
    data, labels = list(data), list(labels)
    if len(data) != len(labels):
        raise InputError(f"random_walker_batch: {len(data)} images but {len(labels)} label arrays")
    n = len(data)
    spacings = list(spacing) if (spacing is not None and len(spacing) == n and np.ndim(spacing[0]) == 1) \
        else [spacing] * n
    x0s = [None] * n if x0 is None else list(x0)
    if len(x0s) != n:
        raise InputError(f"random_walker_batch: x0 needs one entry per case ({n}), got {len(x0s)}")
    _check_solver_args(beta, tol, None)
    am = array_module(resolve_device(device))
    if am.device == "cpu":
        return [random_walker(d, lab, beta=beta, mode="rb", tol=tol, return_full_prob=True, spacing=sp,
                              prob_tol=prob_tol, channel_axis=channel_axis, device="cpu", x0=g)
                for d, lab, sp, g in zip(data, labels, spacings, x0s)]
    problems = [_prepare(d, lab, sp, channel_axis, g) for d, lab, sp, g in zip(data, labels, spacings, x0s)]
    return _solve_stacked(am, problems, [np.asarray(lab) for lab in labels], beta, tol, check_every, prob_tol)


def _resolve_mode(mode, device):
    """(mode, device) after the mode table, checked once before any work."""
    if mode is None:
        mode = "auto"
    if mode not in MODES:
        raise InputError(f"{mode!r} is not a valid mode. Valid modes are {', '.join(map(repr, MODES))} and None")
    if mode == "cg_mg":
        if device == "cuda":
            raise InputError("mode 'cg_mg' (pyamg) runs on the CPU only; on a GPU use mode='cg_j' or the default")
        device = "cpu"
        if not has_module("pyamg"):
            warnings.warn('"cg_mg" not available, it requires pyamg to be installed. The "cg_j" mode will be used '
                          'instead. (pip install pyamg)', UserWarning, stacklevel=3)
            mode = "cg_j"
    device = resolve_device(device)
    if mode == "cg":
        warnings.warn('"cg" mode may be slow: plain conjugate gradients have no preconditioner; "cg_j", "rb" or '
                      'the default mode reach the same answer faster', UserWarning, stacklevel=3)
    return mode, device


def _check_solver_args(beta, tol, maxiter):
    if not np.isfinite(beta) or beta < 0:
        raise InputError(f"beta must be finite and >= 0, got {beta}")
    if not (0 < tol < 1):
        raise InputError(f"tol must be in (0, 1), got {tol}")
    if maxiter is not None and (int(maxiter) != maxiter or maxiter < 1):
        raise InputError(f"maxiter must be a positive integer or None, got {maxiter}")


class _Problem:
    """One image's random-walker problem after validation and seed preprocessing, on
    (X, Y, Z, C) arrays (2D gets a singleton third axis, like scikit-image)."""

    def __init__(self, labels, data, seeds, nlabels, active, spacing, x0_flat):
        self.labels, self.data, self.seeds, self.nlabels = labels, data, seeds, nlabels
        self.active, self.spacing, self.x0_flat = active, spacing, x0_flat


def _prepare(data, labels, spacing, channel_axis, x0):
    """Validated :class:`_Problem`, or the reason (a string) why there is nothing to solve."""
    labels = np.asarray(labels)
    data = np.asarray(data)
    if labels.dtype.kind not in "iubf":
        raise InputError(f"labels must be an integer (or float) array, got dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise InputError("labels hold NaN or Inf values")
    if labels.ndim not in (2, 3):
        raise InputError(f"labels must be 2D or 3D, got shape {labels.shape}")
    if channel_axis is not None:
        if data.ndim not in (3, 4):
            raise InputError(f"with channel_axis, data must have 3 or 4 dimensions, got {data.ndim}")
        data = np.moveaxis(data, channel_axis, -1)
        if data.shape[:-1] != labels.shape:
            raise InputError(f"data shape {data.shape[:-1]} (without channels) differs from labels shape {labels.shape}")
    else:
        if data.ndim not in (2, 3):
            raise InputError(f"data must be 2D or 3D (or give channel_axis), got shape {data.shape}")
        if data.shape != labels.shape:
            raise InputError(f"data shape {data.shape} differs from labels shape {labels.shape}")
    if spacing is None:
        spacing = np.ones(labels.ndim)
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (labels.ndim,):
        raise InputError(f"spacing needs one value per spatial axis ({labels.ndim}), got {spacing.tolist()}")
    if np.any(~np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"spacing must be finite and > 0, got {spacing.tolist()}")
    data = _as_float(data)
    if not np.all(np.isfinite(data)):
        raise InputError("data holds NaN or Inf values")
    prep = preprocess(labels)
    if isinstance(prep, str):
        return prep
    seeds, nlabels, active, _ = prep
    if channel_axis is None:
        data = data[..., np.newaxis]
    if labels.ndim == 2:
        data = data[:, :, np.newaxis, :]
        seeds = seeds[..., np.newaxis]
        active = active[..., np.newaxis]
        spacing = np.r_[spacing, 1.0]
    x0_flat = None
    if x0 is not None:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != labels.shape:
            raise InputError(f"x0 shape {x0.shape} differs from labels shape {labels.shape}")
        x0_flat = x0.reshape(seeds.shape)
    return _Problem(labels, data, seeds, nlabels, active, spacing, x0_flat)


def _as_float(data):
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if data.dtype.kind in "iub":
        from skimage.util import img_as_float

        return img_as_float(data)
    return data


def _passthrough(labels, reason, return_full_prob):
    """scikit-image's answer when nothing is solved: no unknown voxel ("Returning provided
    labels"), or none that a seed can reach (those become -1)."""
    if reason == "no unknown":
        warnings.warn("Random walker only segments unlabeled areas, where labels == 0, and found none. "
                      "Returning provided labels.", UserWarning, stacklevel=3)
        out = labels.copy()
    else:
        warnings.warn("All unlabeled pixels are isolated, they could not be determined by the random walker "
                      "algorithm: no seed reaches them. Returning the seeds, with -1 there.", UserWarning,
                      stacklevel=3)
        from scipy import ndimage as ndi

        out = labels.copy()
        reachable = ndi.binary_propagation(labels > 0, mask=labels >= 0)
        out[(labels == 0) & ~reachable] = -1
    if return_full_prob:
        # scikit-image's layout for this case: one boolean mask per label along a last axis
        return np.concatenate([np.atleast_3d(out == v) for v in label_values(out) if v > 0], axis=-1)
    return out


def _assemble(am, problem, beta, dtype):
    """(A, rhs, unknown) on the array module's device."""
    if am.device == "cpu":
        return assemble_cpu(problem.data, problem.seeds, problem.active, problem.nlabels, problem.spacing, beta,
                            dtype=dtype)
    weights = edge_weights(am, am.asarray(problem.data, dtype=dtype), problem.spacing, beta)
    return build_unknown_system(am, weights, am.asarray(problem.seeds), problem.nlabels, am.asarray(problem.active),
                                dtype=dtype)


# Default iteration cap above _SMALL unknowns: this many iterations per voxel of the summed
# grid extent (3 x 128 = 384 for a 128^3 crop: 7,680 iterations), instead of SciPy's 10 n
# (8 million there). Not yet checked against the iteration counts of the whole real battery.
_ITERATIONS_PER_AXIS_VOXEL = 20


@dataclass(frozen=True)
class _Plan:
    """Every decision of one solve, made once (:func:`_plan`) from the mode, device, size and
    tolerance; the single path and the batched path's retries read it."""

    solver: str       # the mode that runs: "rb", "cg_j", "cg", "cg_mg" or "bf" (every mode at _DIRECT or fewer)
    dtype: type       # float32 for the iterative modes above _SMALL unknowns at tol >= 1e-5
    every: bool       # solve every label's column (else the strongest one is implied)
    corrected: bool   # the strong-component coarse correction
    refine: bool      # the range test, with tighter re-solves where it fails
    maxiter: int


def _plan(mode, device, n_unknowns, shape, tol, maxiter) -> _Plan:
    small = n_unknowns < _SMALL
    if n_unknowns <= _DIRECT:
        mode = "bf"
    if mode == "auto":
        mode = "cg_j" if (small or device == "cuda") else "rb"
    float32 = mode in ("rb", "cg_j") and not small and tol >= 1e-5
    # The coarse correction: 'rb' always (above _DIRECT); 'cg_j' (and so 'auto') above 2**15
    # unknowns, where scikit-image's answer is not reproduced anyway. From _DIRECT to 2**15 the
    # default keeps scikit-image's answer, range warning included.
    corrected = mode == "rb" or (mode == "cg_j" and not small)
    if not maxiter:  # scikit-image's (SciPy's) cap 10 n; above _SMALL a cap by the grid's extent
        maxiter = 10 * n_unknowns if small else min(10 * n_unknowns, _ITERATIONS_PER_AXIS_VOXEL * int(sum(shape)))
    return _Plan(mode, np.float32 if float32 else np.float64, small or mode in ("cg", "cg_mg", "bf"), corrected,
                 mode != "bf" and (corrected or not small), int(maxiter))


@dataclass
class _System:
    """One problem's unknowns' block in one precision: ``A``, the solved columns of the
    right-hand side ``B``, the unknowns' mask and the coarse space (None: no correction)."""

    A: object
    B: object
    unknown: object
    coarse: object

    @classmethod
    def assemble(cls, am, problem, beta, dtype, solved, with_coarse: bool):
        A, rhs, unknown = _assemble(am, problem, beta, dtype)
        return cls(A, rhs[:, solved], unknown, _coarse_space(A) if with_coarse else None), rhs

    def in_precision(self, am, problem, beta, dtype, solved) -> "_System":
        """The same system assembled again in ``dtype`` (the float64 retries)."""
        if np.dtype(self.A.dtype) == np.dtype(dtype):
            return self
        return _System.assemble(am, problem, beta, dtype, solved, self.coarse is not None)[0]

    @property
    def dtype(self):
        return np.dtype(self.A.dtype)


def _solve_problem(am, problem, beta, mode, tol, maxiter, prob_tol):
    """The unknowns' probabilities X (n_u, nlabels, float64, host) and the unknown mask."""
    n_unknowns = int(np.count_nonzero(problem.seeds == 0))
    plan = _plan(mode, am.device, n_unknowns, problem.seeds.shape, tol, maxiter)
    nlabels = problem.nlabels
    system, rhs = _System.assemble(am, problem, beta, plan.dtype, slice(None), with_coarse=False)
    if nlabels == 1:
        # a single label: the harmonic function with all boundary values 1 is exactly 1
        return np.ones((system.A.shape[0], 1)), am.to_numpy(system.unknown)
    implied, solved = (None, list(range(nlabels))) if plan.every else _columns(rhs, nlabels)
    system.B = rhs[:, solved]
    system.coarse = _coarse_space(system.A) if plan.corrected else None
    guesses = [_initial_guess(am, problem, system.unknown, solved)] + [None] * (len(solved) - 1)
    if system.coarse is not None:
        guesses = [system.coarse.solve(system.B[:, k]) if g is None else g for k, g in enumerate(guesses)]
        tol = tol * _COARSE_TOL_FACTOR
    solver = plan.solver
    part, infos = _solve_columns(am, system.A, system.B, solver, tol, plan.maxiter, guesses)
    if system.dtype == np.float32 and any(i == BREAKDOWN for i in infos):
        warnings.warn(f"random_walker: the float32 '{solver}' solve broke down (its operator lost positive "
                      "definiteness in rounding); solved again in float64 with Jacobi-CG", RuntimeWarning,
                      stacklevel=3)
        solver, system = "cg_j", system.in_precision(am, problem, beta, np.float64, solved)
        part, infos = _solve_columns(am, system.A, system.B, solver, tol, plan.maxiter, guesses)
    if system.coarse is not None:
        part = _corrected(am.xp, system.coarse, part, system.B)
    if plan.refine:
        part, infos, system = _refine_range(am, problem, beta, system, solved, implied, part, infos, solver, tol,
                                            plan.maxiter, prob_tol)
    _warn_unconverged(infos, plan.maxiter, stacklevel=4)
    X = am.xp.zeros((part.shape[0], nlabels), dtype=np.float64)
    X[:, solved] = part
    if implied is not None:
        X[:, implied] = 1.0 - part.sum(axis=1)
    return am.to_numpy(X), am.to_numpy(system.unknown)


def _refine_range(am, problem, beta, system, solved, implied, part, infos, solver, tol, maxiter, prob_tol):
    """Solve on, warm-started, while the answer leaves [0, 1] by more than ``prob_tol``.

    The range is an a-posteriori error test that the residual test misses: voxels walled off
    by weak edges barely move the residual. So: 10x tighter in the same precision, then 100x
    tighter in float64 (float32 stalls there), each followed by the coarse correction where
    there is one. Returns (part, infos, system)."""
    for factor, dtype in ((0.1, system.dtype), (0.01, np.float64)):
        if all(i >= 0 for i in infos) and _in_range(am.xp, part, implied, prob_tol):
            break
        system = system.in_precision(am, problem, beta, dtype, solved)
        part, infos = _solve_columns(am, system.A, system.B, solver, tol * factor, maxiter,
                                     [part[:, k] for k in range(part.shape[1])])
        if system.coarse is not None:
            part = _corrected(am.xp, system.coarse, part, system.B)
    return part, infos, system


def _warn_unconverged(infos, maxiter, stacklevel):
    """scikit-image's warning where a column did not converge (a float64 breakdown or the cap)."""
    if any(i == BREAKDOWN for i in infos):
        warnings.warn("Conjugate gradient convergence to tolerance not achieved: the iteration broke down in "
                      "float64; decrease beta, or use mode='bf' on a small problem", UserWarning,
                      stacklevel=stacklevel)
    elif any(i > 0 for i in infos):
        warnings.warn(f"Conjugate gradient convergence to tolerance not achieved within {maxiter} iterations. "
                      "Consider decreasing beta to improve system conditioning, or raising maxiter",
                      UserWarning, stacklevel=stacklevel)


def _coarse_space(A):
    """The strong-component coarse space of ``A`` (see ``_coarse``), or None where its
    coarse system cannot be factorised."""
    try:
        return CoarseSpace(A)
    except RuntimeError:  # SuperLU: exactly singular (no seed reachable from a component)
        return None


def _corrected(xp, coarse, part, B):
    """Each column of ``part`` after the coarse (Galerkin) correction."""
    return xp.stack([coarse.correct(part[:, k], B[:, k]) for k in range(part.shape[1])], axis=1)


def _in_range(xp, part, implied, prob_tol):
    lo, hi = float(part.min()), float(part.max())
    if implied is not None:
        total = part.sum(axis=1)
        lo, hi = min(lo, 1.0 - float(total.max())), max(hi, 1.0 - float(total.min()))
    return lo >= -prob_tol and hi <= 1.0 + prob_tol


def _solve_columns(am, A, B, solver, tol, maxiter, guesses):
    """(X, infos): ``A X = B`` column by column with ``solver``, from ``guesses`` (one
    initial guess or None per column)."""
    xp = am.xp
    if solver == "bf":
        return direct_solve(am, A, B), [0] * B.shape[1]
    if solver == "cg_mg":
        A = A.astype(np.float64)
        system = PreconditionedSystem(A, ruge_stuben_preconditioner(A))
        maxiter = min(maxiter, _CG_MG_MAXITER)
    elif solver == "rb" and RedBlackSystem.applies(A):
        system = RedBlackSystem(A)
        tol = tol * _RB_TOL_FACTOR
    else:
        system = PreconditionedSystem(A, "none" if solver == "cg" else "jacobi")
    check_every = 1 if system.steps.host_scalars else 10
    out = xp.zeros(B.shape, dtype=np.float64)
    infos = []
    for k in range(B.shape[1]):
        x, info = conjugate_gradient(system, B[:, k], guesses[k], tol=tol, maxiter=maxiter,
                                     check_every=check_every)
        out[:, k] = x
        infos.append(info)
    return out, infos


def _columns(rhs, nlabels):
    """(implied, solved): solve for all labels but the one whose seeds pull hardest (largest
    right-hand side): a relative tolerance on the smaller right-hand sides is tighter in
    absolute terms."""
    norms = [float((rhs[:, k].astype(np.float64) ** 2).sum()) for k in range(nlabels)]  # no BLAS: see _kernels._dot
    implied = int(np.argmax(norms))
    return implied, [k for k in range(nlabels) if k != implied]


def _initial_guess(am, problem, unknown, solved):
    """The unknowns' part of x0 for the first solved label (x0 is the probability of label 1)."""
    if problem.x0_flat is None:
        return None
    x0_u = am.asarray(problem.x0_flat)[unknown]
    if solved[0] == 0:
        return x0_u
    return 1.0 - x0_u if problem.nlabels == 2 else None


def _check_range(X, prob_tol):
    if X.size and (X.min() < -prob_tol or X.max() > 1 + prob_tol):
        warnings.warn("The probability range is outside [0, 1] given the tolerance `prob_tol`: the solve is not "
                      "accurate enough for this image; decrease `beta` and/or `tol`.", UserWarning, stacklevel=3)


def _finish(problem, X, unknown, return_full_prob):
    """The output in the input's layout from the unknowns' probabilities X (n_u, nlabels)."""
    labels, nlabels = problem.labels, problem.nlabels
    if return_full_prob:
        # ``unknown`` and the seeds share the (X, Y, Z) working layout
        return full_probabilities(problem.seeds, unknown.reshape(problem.seeds.shape), X).reshape(
            (nlabels,) + labels.shape)
    unknown = unknown.reshape(labels.shape)
    out = output_codes(labels, label_values(labels))  # unknown voxels no seed can reach stay 0
    out[unknown] = np.argmax(X, axis=1) + 1
    return out.astype(labels.dtype)


def _solve_stacked(am, problems, labels, beta, tol, check_every, prob_tol):
    """The batched path of :func:`random_walker_batch` on any array module (the tests run
    it on numpy): prepared problems (or reasons) -> full probabilities.

    A case of at most ``_DIRECT`` unknowns is solved exactly, alone. One Jacobi-CG with the
    coarse correction serves every other case at once; a case that it leaves
    unconverged, broken down or outside [0, 1] is solved again alone by :func:`_solve_problem`
    (mode ``cg_j``), so it gets the single path's float64 retry, range refinement and warnings."""
    out = [None if isinstance(p, _Problem) else _passthrough(lab, p, True) for p, lab in zip(problems, labels)]
    todo = [i for i, p in enumerate(problems) if isinstance(p, _Problem)]
    if not todo:
        return out
    plans = [_plan("cg_j", am.device, int(np.count_nonzero(problems[i].seeds == 0)), problems[i].seeds.shape, tol,
                   None) for i in todo]
    exact = {i for i, plan in zip(todo, plans) if plan.solver == "bf"}
    for i in exact:
        out[i] = _solved_alone(am, problems[i], beta, "bf", tol, prob_tol)
    plans = [plan for i, plan in zip(todo, plans) if i not in exact]
    todo = [i for i in todo if i not in exact]
    if not todo:
        return out
    dtype = np.float32 if all(p.dtype == np.float32 for p in plans) else np.float64
    systems = [_assemble(am, problems[i], beta, dtype) for i in todo]
    columns = [_columns(rhs, problems[i].nlabels) for i, (_, rhs, _) in zip(todo, systems)]
    parts, failed = _stacked_columns(am, problems, todo, systems, columns, tol, max(p.maxiter for p in plans),
                                     check_every)
    for c, (i, part, (_, _, unknown), (implied, solved)) in enumerate(zip(todo, parts, systems, columns)):
        if failed[c] or not _in_range(am.xp, part, implied, prob_tol):
            out[i] = _solved_alone(am, problems[i], beta, "cg_j", tol, prob_tol)
            continue
        X = am.xp.zeros((part.shape[0], problems[i].nlabels), dtype=np.float64)
        X[:, solved] = part
        X[:, implied] = 1.0 - part.sum(axis=1)
        X = am.to_numpy(X)
        _check_range(X, prob_tol)
        out[i] = _finish(problems[i], X, am.to_numpy(unknown), True)
    return out


def _solved_alone(am, problem, beta, mode, tol, prob_tol):
    """One case of the batched path through the single path (its retries and warnings): the
    full probabilities."""
    X, unknown = _solve_problem(am, problem, beta, mode, tol, None, prob_tol)
    _check_range(X, prob_tol)
    return _finish(problem, X, unknown, True)


def _stacked_columns(am, problems, todo, systems, columns, tol, maxiter, check_every):
    """Each case's solved columns from one block-diagonal Jacobi-CG per column index, and which
    cases it failed (unconverged or broken down)."""
    xp = am.xp
    A, case = stack_systems(am, [s[0] for s in systems])
    parts = [xp.zeros((s[0].shape[0], len(c[1])), dtype=np.float64) for s, c in zip(systems, columns)]
    offsets = np.cumsum([0] + [s[0].shape[0] for s in systems]).tolist()  # each case's rows in the stack
    system = PreconditionedSystem(A, "jacobi", generic=True)
    coarse = _coarse_space(A)
    tol_cg = tol if coarse is None else tol * _COARSE_TOL_FACTOR
    failed = np.zeros(len(todo), dtype=bool)
    for j in range(max(len(c[1]) for c in columns)):
        # column j of every case's solved labels (zeros where a case has fewer labels)
        b = xp.concatenate([rhs[:, solved[j]] if j < len(solved) else xp.zeros(rhs.shape[0], dtype=rhs.dtype)
                            for (_, rhs, _), (_, solved) in zip(systems, columns)])
        guesses = [_initial_guess(am, problems[i], unknown, solved) if j == 0 else None
                   for i, (_, _, unknown), (_, solved) in zip(todo, systems, columns)]
        g = None
        if any(x is not None for x in guesses) or coarse is not None:
            first = coarse.solve(b) if coarse is not None else xp.zeros(b.shape[0], dtype=np.float64)
            g = xp.concatenate([x if x is not None else first[start:stop]
                                for x, start, stop in zip(guesses, offsets[:-1], offsets[1:])])
        system.steps = BatchedSteps(xp, system.dtype, case, len(todo))  # every case active again
        x, info = conjugate_gradient(system, b, g, tol=tol_cg, maxiter=maxiter, check_every=check_every)
        if coarse is not None:
            x = coarse.correct(x, b)
        if info == BREAKDOWN:
            failed[:] = True
        elif info > 0:
            failed |= am.to_numpy(system.steps.active).astype(bool)
        for part, (_, solved), start, stop in zip(parts, columns, offsets[:-1], offsets[1:]):
            if j < len(solved):
                part[:, j] = x[start:stop]
    return parts, failed
