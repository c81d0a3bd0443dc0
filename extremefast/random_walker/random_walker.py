"""Random walker segmentation (Grady 2006), a drop-in for scikit-image's ``random_walker``."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..xp import array_module, has_module, resolve_device
from ._kernels import numba
from ._laplacian import assemble_cpu, build_unknown_system, edge_weights, stack_systems
from ._redblack import RedBlackSystem, redblack_cg
from ._solvers import PyamgSolver, cg, jacobi_preconditioner

MODES = ("auto", "rb", "gmg", "amg", "cg_mg", "cg_j", "cg", "bf")
_CPU_ONLY = ("gmg", "amg", "cg_mg")


def random_walker(data, labels, beta=130, mode=None, tol=1.0e-3, copy=True, return_full_prob=False,
                  spacing=None, *, prob_tol=1e-3, channel_axis=None, device="auto", x0=None):
    """Random walker segmentation from seeds, scikit-image's interface and answer, faster.

    Parameters
    ----------
    data : (M, N[, P][, C]) array
        Image to segment, 2D or 3D; integer images are scaled to [0, 1] as
        scikit-image does (``img_as_float``).
    labels : (M, N[, P]) int array
        Seeds: positive values are labels, 0 is unknown, negative values are inactive
        pixels removed from the graph.
    beta : float
        Diffusion penalty; edge weights are ``exp(-beta / (10 * std(data)) * grad^2) + 1e-10``.
    mode : {None, 'auto', 'rb', 'cg_j', 'gmg', 'cg_mg', 'amg', 'cg', 'bf'}
        Solver. None/'auto' is the fastest measured: 'rb' on the CPU, 'cg_j' on a GPU.
        'rb' eliminates every other voxel of the grid (red-black ordering) and runs
        Jacobi-CG on the remaining half (Numba on the CPU, CuPy on a GPU; the GPU run
        is tested but its speed not yet measured): about 60% of the iterations of
        'cg_j', each costing about one mat-vec; it solves to half of ``tol``, which keeps
        its largest error below Jacobi-CG's. 'cg_j' is Jacobi-preconditioned CG, scikit-image's default
        method, with fused compiled kernels (Numba on the CPU, CUDA on a GPU). 'gmg' is
        CG preconditioned by this package's geometric multigrid V-cycle (Galerkin coarse
        operators, CPU): 8-16 iterations and a smaller median error, but no faster at the
        same largest error on 128^3 crops. 'cg_mg'/'amg' use pyamg's smoothed-aggregation
        hierarchy as preconditioner (CPU; its setup costs more than it saves on
        random-walker crops, see the benchmarks); 'cg' plain CG; 'bf' a direct sparse
        solve (small problems only).
    tol : float
        Relative residual tolerance of each iterative solve.
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
        CuPy sees one, except for the CPU-only modes ('gmg', 'amg', 'cg_mg').
    x0 : array, optional
        Initial guess, the previous probabilities of label 1 (same shape as labels);
        warm-starts the iterative solve.

    Returns
    -------
    out : ndarray
        Labels (same dtype and shape as ``labels``; seed values are renumbered
        1..nlabels in increasing order, as scikit-image does) or, with
        ``return_full_prob``, float64 probabilities of shape (nlabels, *labels.shape).

    Notes
    -----
    With ``x`` the probabilities of the unknown voxels, the Dirichlet problem is
    ``L_U x = -B^T m`` (Grady 2006, eq. 4 of Roth et al.). The unknowns' block is assembled
    directly in CSR form from seven fixed columns per voxel. Probabilities sum to one, so
    for K labels only K-1 systems are solved (one for two labels); scikit-image solves K.

    References
    ----------
    L. Grady, "Random walks for image segmentation", IEEE TPAMI 28(11), 2006.
    """
    if mode is None:
        mode = "auto"
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not valid; valid modes are {', '.join(map(repr, MODES))} and None")
    _check_solver_args(beta, tol)
    device = "cpu" if (device in (None, "auto") and mode in _CPU_ONLY) else resolve_device(device)
    problem = _prepare(data, labels, spacing, channel_axis, x0)
    if isinstance(problem, np.ndarray):  # nothing to solve: no unknown (or no reachable unknown) voxel
        return problem if return_full_prob else _labels_only_output(labels, False)
    am = array_module(device)
    xp = am.xp
    # float32 halves the memory traffic of the iterative solve; it resolves residuals down to
    # ~1e-5, so tighter tolerances and the direct and AMG solvers assemble in float64.
    dtype = np.float32 if (mode in ("auto", "rb", "gmg", "cg_j") and tol >= 1e-5) else np.float64
    A, rhs, unknown = _assemble(am, problem, beta, dtype)
    nlabels = problem.nlabels
    if nlabels == 1:
        # a single label: the harmonic function with all boundary values 1 is exactly 1
        X = xp.ones((A.shape[0], 1), dtype=np.float64)
    else:
        implied, solved = _columns(rhs, nlabels)
        part = _solve(am, A, rhs[:, solved], tol, mode, _initial_guess(am, problem, unknown, solved))
        X = _all_columns(xp, part, implied, solved, nlabels)
    return _finish(problem, am.to_numpy(X), am.to_numpy(unknown), return_full_prob, prob_tol)


def random_walker_batch(data, labels, beta=130, tol=1.0e-3, spacing=None, *, prob_tol=1e-3, channel_axis=None,
                        device="auto", x0=None, check_every=10):
    """Random walker for several images at once: a list of probabilities, each as
    ``random_walker(data[i], labels[i], ..., return_full_prob=True)`` returns it.

    On a GPU the cases' systems are stacked into one and solved by one Jacobi-CG with
    per-case step lengths (per-case dot products by segmented sums), so every kernel
    launch and every convergence check serves all cases; a case stops moving once its own
    residual is below ``tol``, tested every ``check_every`` iterations (each test is one
    small device-to-host copy). On the CPU each case is solved in turn by the default
    solver, which is faster there. ``data``, ``labels``, ``spacing`` (one for all or one
    per case) and ``x0`` (None or one per case, each None or the previous probability of
    label 1) follow :func:`random_walker`.
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
    _check_solver_args(beta, tol)
    am = array_module(resolve_device(device))
    if am.device == "cpu":
        return [random_walker(d, lab, beta=beta, tol=tol, return_full_prob=True, spacing=sp, prob_tol=prob_tol,
                              channel_axis=channel_axis, device="cpu", x0=g)
                for d, lab, sp, g in zip(data, labels, spacings, x0s)]
    problems = [_prepare(d, lab, sp, channel_axis, g) for d, lab, sp, g in zip(data, labels, spacings, x0s)]
    return _solve_stacked(am, problems, beta, tol, check_every, prob_tol)


def _solve_stacked(am, problems, beta, tol, check_every, prob_tol):
    """The batched path of :func:`random_walker_batch` on any array module (the tests run
    it on numpy): prepared problems (or ready answers) -> full probabilities."""
    from ._solvers import batched_jacobi_cg

    out = [p if isinstance(p, np.ndarray) else None for p in problems]
    todo = [i for i, p in enumerate(problems) if not isinstance(p, np.ndarray)]
    if not todo:
        return out
    xp = am.xp
    dtype = np.float32 if tol >= 1e-5 else np.float64
    systems = [_assemble(am, problems[i], beta, dtype) for i in todo]
    A, case = stack_systems(am, [s[0] for s in systems])
    columns = [_columns(rhs, problems[i].nlabels) for i, (_, rhs, _) in zip(todo, systems)]
    parts = [xp.zeros((s[0].shape[0], len(c[1])), dtype=np.float64) for s, c in zip(systems, columns)]
    for j in range(max(len(c[1]) for c in columns)):
        # column j of every case's solved labels (zeros where a case has fewer labels)
        b = xp.concatenate([rhs[:, solved[j]] if j < len(solved) else xp.zeros(rhs.shape[0], dtype=rhs.dtype)
                            for (_, rhs, _), (_, solved) in zip(systems, columns)])
        guesses = [_initial_guess(am, problems[i], unknown, solved) if j == 0 else None
                   for i, (_, _, unknown), (_, solved) in zip(todo, systems, columns)]
        g = None
        if any(x is not None for x in guesses):
            g = xp.concatenate([x if x is not None else xp.zeros(s[0].shape[0], dtype=np.float64)
                                for x, s in zip(guesses, systems)])
        x, converged = batched_jacobi_cg(am, A, b, case, len(todo), tol=tol, x0=g, check_every=check_every)
        if not converged.all():
            warnings.warn("random_walker_batch: the iterative solve did not reach tol for some cases",
                          RuntimeWarning, stacklevel=3)
        start = 0
        for part, (A_c, _, _), (_, solved) in zip(parts, systems, columns):
            stop = start + A_c.shape[0]
            if j < len(solved):
                part[:, j] = x[start:stop]
            start = stop
    for i, part, (_, _, unknown), (implied, solved) in zip(todo, parts, systems, columns):
        X = _all_columns(xp, part, implied, solved, problems[i].nlabels)
        out[i] = _finish(problems[i], am.to_numpy(X), am.to_numpy(unknown), True, prob_tol)
    return out


class _Problem:
    """One image's random-walker problem after validation and seed preprocessing, on
    (X, Y, Z, C) arrays (2D gets a singleton third axis, like scikit-image)."""

    def __init__(self, labels, data, seeds, nlabels, active, spacing, x0_flat):
        self.labels, self.data, self.seeds, self.nlabels = labels, data, seeds, nlabels
        self.active, self.spacing, self.x0_flat = active, spacing, x0_flat


def _check_solver_args(beta, tol):
    if not np.isfinite(beta) or beta < 0:
        raise InputError(f"beta must be finite and >= 0, got {beta}")
    if not (0 < tol < 1):
        raise InputError(f"tol must be in (0, 1), got {tol}")


def _prepare(data, labels, spacing, channel_axis, x0):
    """Validated :class:`_Problem`, or the full-probability answer (ndarray) when there is
    nothing to solve."""
    labels = np.asarray(labels)
    data = np.asarray(data)
    if labels.dtype.kind not in "iub":
        raise InputError(f"labels must be an integer array, got dtype {labels.dtype}")
    if channel_axis is not None:
        data = np.moveaxis(data, channel_axis, -1)
        if data.ndim not in (3, 4):
            raise InputError(f"with channel_axis, data must have 3 or 4 dimensions, got {data.ndim}")
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
    prep = _preprocess(labels)
    if prep is None:
        return _labels_only_output(labels, True)
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


def _assemble(am, problem, beta, dtype):
    """(A, rhs, unknown) on the array module's device."""
    if am.device == "cpu":
        return assemble_cpu(problem.data, problem.seeds, problem.active, problem.nlabels, problem.spacing, beta,
                            dtype=dtype)
    weights = edge_weights(am, am.asarray(problem.data, dtype=dtype), problem.spacing, beta)
    return build_unknown_system(am, weights, am.asarray(problem.seeds), problem.nlabels, am.asarray(problem.active),
                                dtype=dtype)


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


def _all_columns(xp, part, implied, solved, nlabels):
    X = xp.zeros((part.shape[0], nlabels), dtype=np.float64)
    X[:, solved] = part
    X[:, implied] = 1.0 - part.sum(axis=1)
    return X


def _finish(problem, X, unknown, return_full_prob, prob_tol):
    """The output in the input's layout from the unknowns' probabilities X (n_u, nlabels)."""
    labels, nlabels = problem.labels, problem.nlabels
    if X.size and (X.min() < -prob_tol or X.max() > 1 + prob_tol):
        warnings.warn("random_walker: probabilities fall outside [0, 1] beyond prob_tol; "
                      "decrease beta or tol", RuntimeWarning, stacklevel=3)
    if return_full_prob:
        # ``unknown`` and the seeds share the (X, Y, Z) working layout
        return full_probabilities(problem.seeds, unknown.reshape(problem.seeds.shape), X).reshape(
            (nlabels,) + labels.shape)
    unknown = unknown.reshape(labels.shape)
    seeds = problem.seeds.reshape(labels.shape)
    out = seeds.astype(labels.dtype)
    out[labels == 0] = 0  # unknown voxels no seed can reach stay 0, as in scikit-image
    out[unknown] = np.argmax(X, axis=1) + 1
    return out


# Multigrid-CG reaches a given residual with a smaller error than Jacobi-CG almost
# everywhere, but a few weakly coupled voxels converge last; solving 10x tighter makes its
# largest error no worse than Jacobi-CG's (and scikit-image's) at the requested tol.
_GMG_TOL_FACTOR = 0.1
# The same holds, less strongly, for the red-black reduced solve (_redblack.py): at the
# requested tol its largest error is close to Jacobi-CG's, at half the tol clearly below it
# for ~13% more iterations (benchmarks/bench_random_walker.py, tests/test_random_walker.py).
_RB_TOL_FACTOR = 0.5


def _as_float(data):
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if data.dtype.kind in "iub":
        from skimage.util import img_as_float

        return img_as_float(data)
    return data


def _preprocess(labels):
    """Seeds renumbered 1..K (unknown 0, inactive -1), K, active mask, isolated-seed mask.

    Unknown voxels that no seed can reach (through active voxels) become inactive, and so
    do seeds with no unknown voxel to reach, exactly as scikit-image prunes its graph.
    Returns None when there is nothing to solve.
    """
    values = _label_values(labels)
    if values.max() <= 0:
        raise InputError("labels hold no seeds: give at least one positive label value")
    if not np.any(values == 0):
        warnings.warn("random_walker: labels have no unknown (0) voxels; returning the seeds",
                      UserWarning, stacklevel=3)
        return None
    unknown = labels == 0
    positive = labels > 0
    active = labels >= 0
    if values[0] < 0:
        isolated_seeds = positive & ~ndi.binary_propagation(unknown, mask=active)
    else:
        # with no inactive voxel the grid is connected: every seed reaches an unknown voxel
        isolated_seeds = np.zeros(labels.shape, dtype=bool)
    seeds = seed_codes(labels, values)
    positive_values = values[values > 0]
    if values[0] < 0 or np.any(isolated_seeds):
        reachable_from_seeds = ndi.binary_propagation(positive & ~isolated_seeds, mask=active)
        orphans = unknown & ~reachable_from_seeds
        if np.all(orphans[unknown]):
            warnings.warn("random_walker: every unknown voxel is cut off from the seeds; "
                          "returning the seeds", UserWarning, stacklevel=3)
            return None
        active = active & ~orphans & ~isolated_seeds
        seeds[orphans] = -1
    seeds[labels < 0] = -1
    return seeds, len(positive_values), active, isolated_seeds


def _label_values(labels):
    """The distinct values of an integer label array, sorted (np.unique without the sort
    when their range is small, as seed arrays' is)."""
    lo, hi = int(labels.min()), int(labels.max())
    if hi - lo < 2**16:
        present = np.zeros(hi - lo + 1, dtype=np.bool_)
        flat = _flat_integers(labels)
        if numba is not None:
            _mark_present(flat, lo, present)
        else:  # pragma: no cover - numba is a dependency
            present[np.unique(flat) - lo] = True
        return (np.flatnonzero(present) + lo).astype(labels.dtype)
    return np.unique(labels)


def _flat_integers(labels):
    flat = labels.ravel()
    return flat.view(np.uint8) if flat.dtype == np.bool_ else flat


def seed_codes(labels, values):
    """int32 seed codes of ``labels`` given its sorted distinct ``values``: positive values
    -> 1..K in increasing order, 0 -> 0, negative values -> -1. One compiled pass through a
    lookup table when the values' range is small; :func:`seed_codes_plain` otherwise (and
    as the reference the tests compare against)."""
    lo, hi = int(values[0]), int(values[-1])
    if numba is None or hi - lo >= 2**16:
        return seed_codes_plain(labels, values)
    table = np.zeros(hi - lo + 1, dtype=np.int32)
    positive = values[values > 0]
    table[(positive.astype(np.int64) - lo)] = np.arange(1, positive.size + 1, dtype=np.int32)
    table[(values[values < 0].astype(np.int64) - lo)] = -1
    out = np.empty(labels.shape, dtype=np.int32)
    _lookup(_flat_integers(labels), lo, table, out.ravel())
    return out


def seed_codes_plain(labels, values):
    out = np.zeros(labels.shape, dtype=np.int32)
    positive = labels > 0
    out[positive] = np.searchsorted(values[values > 0], labels[positive]) + 1
    out[labels < 0] = -1
    return out


def full_probabilities(seeds, unknown, X):
    """The (nlabels, *grid) probabilities from the unknowns' rows X (n_u, nlabels), rows in
    grid order: X on unknown voxels, 1 for a seed's own label, 0 elsewhere. One compiled
    pass (planes in parallel); :func:`full_probabilities_plain` is the reference."""
    if numba is None or seeds.ndim != 3:
        return full_probabilities_plain(seeds, unknown, X)
    starts = np.zeros(seeds.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(unknown.reshape(seeds.shape[0], -1), axis=1), out=starts[1:])
    out = np.empty((X.shape[1],) + seeds.shape, dtype=np.float64)
    _fill_probabilities(seeds, unknown, starts, np.ascontiguousarray(X, dtype=np.float64), out)
    return out


def full_probabilities_plain(seeds, unknown, X):
    out = np.zeros((X.shape[1],) + seeds.shape, dtype=np.float64)
    for k in range(X.shape[1]):
        out[k][unknown] = X[:, k]
        out[k][seeds == k + 1] = 1.0
    return out


if numba is not None:

    @numba.njit(parallel=True, cache=True)
    def _mark_present(flat, lo, present):
        """present[v - lo] = True for every value v (concurrent writes all store True)."""
        for i in numba.prange(flat.shape[0]):
            present[np.int64(flat[i]) - lo] = True

    @numba.njit(parallel=True, cache=True)
    def _lookup(flat, lo, table, out):
        for i in numba.prange(flat.shape[0]):
            out[i] = table[np.int64(flat[i]) - lo]

    @numba.njit(parallel=True, cache=True)
    def _fill_probabilities(seeds, unknown, starts, X, out):
        nlabels = X.shape[1]
        for i in numba.prange(seeds.shape[0]):
            r = starts[i]
            for j in range(seeds.shape[1]):
                for m in range(seeds.shape[2]):
                    if unknown[i, j, m]:
                        for k in range(nlabels):
                            out[k, i, j, m] = X[r, k]
                        r += 1
                    else:
                        s = seeds[i, j, m]
                        for k in range(nlabels):
                            out[k, i, j, m] = 1.0 if s == k + 1 else 0.0


def _labels_only_output(labels, return_full_prob):
    values = _label_values(labels)
    positive_values = values[values > 0]
    if return_full_prob:
        return np.stack([(labels == v).astype(np.float64) for v in positive_values])
    out = np.zeros_like(labels)
    pos = labels > 0
    out[pos] = np.searchsorted(positive_values, labels[pos]) + 1
    out[labels < 0] = labels[labels < 0]
    return out


def _solve(am, A, rhs, tol, mode, x0=None):
    """Solve ``A X = rhs`` column by column with the chosen method (A: StencilMatrix)."""
    xp = am.xp
    if mode == "auto":
        # measured (benchmarks/bench_random_walker.py): on 128^3 crops the red-black reduced
        # Jacobi-CG is the fastest CPU solve at a largest error below Jacobi-CG's; on a GPU
        # the plain Jacobi-CG kernels
        mode = "rb" if am.device == "cpu" else "cg_j"
    if mode == "gmg" and am.device == "cuda":
        raise InputError("mode 'gmg' runs on the CPU only for now; use mode='cg_j' (the default) on a GPU")
    if mode in ("amg", "cg_mg") and am.device == "cuda":
        raise InputError(f"mode {mode!r} (pyamg) runs on the CPU only; use mode='cg_j' (the default) on a GPU")
    if mode in ("amg", "cg_mg") and not has_module("pyamg"):
        raise InputError(f"mode {mode!r} needs pyamg (pip install pyamg)")
    out = xp.zeros(rhs.shape, dtype=np.float64)
    if mode == "bf":
        if am.device == "cuda":
            import cupyx.scipy.sparse.linalg as spla
        else:
            import scipy.sparse.linalg as spla
        csr = A.tocsr().astype(np.float64)
        for k in range(rhs.shape[1]):
            out[:, k] = spla.spsolve(csr.tocsc(), rhs[:, k].astype(np.float64))
        return out
    if mode in ("amg", "cg_mg"):
        solver = PyamgSolver(A.tocsr().astype(np.float64))
        solve = lambda b, g: solver.solve(b.astype(np.float64), g, tol=tol, maxiter=300)
    elif mode == "gmg":
        from ._multigrid import MultigridPreconditioner, multigrid_cg

        M = MultigridPreconditioner(A)
        solve = lambda b, g: multigrid_cg(A, b, g, tol=tol * _GMG_TOL_FACTOR, M=M)
    elif mode == "rb" and RedBlackSystem.applies(A):
        system = RedBlackSystem(A)
        solve = lambda b, g: redblack_cg(A, b, g, tol=tol * _RB_TOL_FACTOR, system=system)
    elif mode in ("rb", "cg_j") and am.device == "cpu":
        from ._kernels import jacobi_cg_numba

        solve = lambda b, g: jacobi_cg_numba(A, b, g, tol=tol)
    else:
        M = jacobi_preconditioner(am, A) if mode in ("cg_j", "rb") else None
        check = 10 if am.device == "cuda" else 1
        solve = lambda b, g: cg(am, A, b, g, tol=tol, M=M, check_every=check)
    failed = 0
    for k in range(rhs.shape[1]):
        guess = x0 if (x0 is not None and k == 0) else None
        x, info = solve(xp.ascontiguousarray(rhs[:, k]), guess)
        failed += info != 0
        out[:, k] = x
    if failed:
        warnings.warn("random_walker: the iterative solve did not reach tol; lower beta or "
                      "raise tol, or use mode='bf' on a small problem", RuntimeWarning, stacklevel=3)
    return out
