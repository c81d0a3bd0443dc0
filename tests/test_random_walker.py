"""The random walker against scikit-image (the reference it replaces) and its own paths."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.sparse.linalg import spsolve
from skimage.segmentation import random_walker as sk_random_walker

from extremefast import random_walker
from extremefast.errors import InputError
from extremefast.random_walk import random_walker_batch, segmentation
from extremefast.random_walk import _seeds as seeds_mod
from extremefast.random_walk._cg import BREAKDOWN, BatchedSteps, PreconditionedSystem, conjugate_gradient
from extremefast.random_walk._cg_ref import jacobi_cg
from extremefast.random_walk._kernels import ell_matvec_plain
from extremefast.random_walk._laplacian import assemble_cpu, build_unknown_system, edge_weights, stack_systems
from extremefast.random_walk._redblack import RedBlackSystem
from extremefast.xp import array_module

from conftest import ARRAY_DEVICES, ARRAY_GPU, FLOAT_DTYPES


def _problem(rng, shape, nlabels=2, negative=False):
    data = rng.normal(0, 0.3, shape)
    centre = tuple(s // 2 for s in shape)
    sl = tuple(slice(c - s // 4, c + s // 4) for c, s in zip(centre, shape))
    data[sl] += 2.0
    labels = np.zeros(shape, dtype=np.int32)
    labels[centre] = 1
    labels[(0,) * len(shape)] = 2
    if nlabels > 2:
        labels[(-1,) * len(shape)] = 3
    if negative:
        labels[tuple(slice(0, 2) for _ in shape[:-1]) + (slice(None),)] = -1
        labels[(0,) * len(shape)] = 0
        labels[(2,) * len(shape)] = 2
    return data, labels


@pytest.mark.parametrize("shape", [(17, 19), (9, 10, 11), (1, 12, 13), (6, 1, 7)])
@pytest.mark.parametrize("nlabels", [2, 3])
def test_matches_scikit_image_direct_solve(rng, shape, nlabels):
    data, labels = _problem(rng, shape, nlabels)
    ref = sk_random_walker(data, labels, mode="bf", return_full_prob=True)
    ours = random_walker(data, labels, mode="bf", return_full_prob=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_array_equal(random_walker(data, labels, mode="bf"), sk_random_walker(data, labels, mode="bf"))


@pytest.mark.parametrize("mode", ["cg_j", "rb", "cg", "cg_mg", "auto"])
def test_iterative_modes_converge_to_direct_solution(rng, mode):
    data, labels = _problem(rng, (12, 13, 14))
    # a moderate beta keeps the system well conditioned, so a small residual means a small error
    ref = sk_random_walker(data, labels, beta=30, mode="bf", return_full_prob=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = random_walker(data, labels, beta=30, mode=mode, tol=1e-8, return_full_prob=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_spacing_channels_and_integer_data_follow_scikit_image(rng):
    data, labels = _problem(rng, (10, 11, 12))
    ref = sk_random_walker(data, labels, mode="bf", spacing=(1.0, 2.0, 0.5), return_full_prob=True)
    ours = random_walker(data, labels, mode="bf", spacing=(1.0, 2.0, 0.5), return_full_prob=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    multi = np.stack([data, data[::-1]], axis=-1)
    ref = sk_random_walker(multi, labels, mode="bf", channel_axis=-1, return_full_prob=True)
    ours = random_walker(multi, labels, mode="bf", channel_axis=-1, return_full_prob=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    ints = (np.clip(data, -1, 3) * 50 + 60).astype(np.uint8)
    ref = sk_random_walker(ints, labels, mode="bf", return_full_prob=True)
    ours = random_walker(ints, labels, mode="bf", return_full_prob=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_inactive_pixels_and_label_values(rng):
    data, labels = _problem(rng, (12, 12, 6), negative=True)
    labels = labels * 7  # non-consecutive label values
    ref = sk_random_walker(data, labels, mode="bf")
    ours = random_walker(data, labels, mode="bf")
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("generic", [False, True], ids=["compiled", "array-module"])
def test_stencil_matvec_and_cg_driver_match_plain_csr(rng, generic):
    am = array_module("cpu")
    data, labels = _problem(rng, (13, 11, 9))
    w = edge_weights(am, data[..., None].astype(np.float64), np.ones(3), 130.0)
    A, rhs, _ = build_unknown_system(am, w, labels, 2, dtype=np.float64)
    csr = A.tocsr()
    x = rng.normal(size=A.shape[0])
    np.testing.assert_allclose(A @ x, csr @ x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ell_matvec_plain(A.cols, A.vals, A.coupling, x), csr @ x, rtol=1e-10, atol=1e-12)
    ref = jacobi_cg(csr, rhs[:, 0], 1e-10, 10000)
    fast, info = conjugate_gradient(PreconditionedSystem(A, generic=generic), rhs[:, 0], tol=1e-10, maxiter=10000)
    assert info == 0
    np.testing.assert_allclose(fast, ref, atol=1e-7)
    # symmetric positive definite
    dense = csr.toarray()
    np.testing.assert_allclose(dense, dense.T)
    assert np.linalg.eigvalsh(dense).min() > 0


def test_warm_start_reaches_same_answer(rng):
    data, labels = _problem(rng, (15, 14, 13))
    cold = random_walker(data, labels, return_full_prob=True, tol=1e-6)
    warm = random_walker(data, labels, return_full_prob=True, tol=1e-6, x0=cold[0])
    np.testing.assert_allclose(warm, cold, atol=1e-4)


def test_constant_image_gives_finite_diffusion(rng):
    labels = np.zeros((8, 9, 10), dtype=np.int32)
    labels[0] = 1
    labels[-1] = 2
    prob = random_walker(np.ones((8, 9, 10)), labels, return_full_prob=True, tol=1e-8)
    assert np.isfinite(prob).all()
    # plain diffusion between two planes: linear in the first index
    np.testing.assert_allclose(prob[0][:, 4, 5], np.linspace(1, 0, 8), atol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (dict(labels=np.zeros((5, 5, 5), int)), "No seeds provided"),
    (dict(data=np.full((5, 5, 5), np.nan)), "NaN"),
    (dict(spacing=(1, 0, 1)), "spacing"),
    (dict(spacing=(1, 1)), "spacing"),
    (dict(mode="nope"), "Valid modes"),
    (dict(data=np.zeros((5, 5))), "differs"),
    (dict(labels=np.full((5, 5, 5), np.nan)), "NaN"),
    (dict(labels=np.zeros((5, 5, 5), dtype=complex)), "integer"),
    (dict(maxiter=0), "maxiter"),
])
def test_bad_input(bad, match):
    labels = np.zeros((5, 5, 5), dtype=int)
    labels[0, 0, 0], labels[-1, -1, -1] = 1, 2
    kwargs = dict(data=np.random.default_rng(0).random((5, 5, 5)), labels=labels)
    kwargs.update(bad)
    with pytest.raises(InputError, match=match):
        random_walker(**kwargs)


def test_single_label_seeds_give_certain_answer(rng):
    data, labels = _problem(rng, (6, 7, 8))
    labels[labels == 2] = 1
    prob = random_walker(data, labels, return_full_prob=True)
    assert prob.shape == (1, 6, 7, 8)
    np.testing.assert_allclose(prob, 1.0)
    seg = random_walker(data, labels)
    assert (seg == 1).all()


@pytest.mark.gpu
def test_gpu_random_walker_matches_cpu(rng):
    if not ARRAY_GPU:
        pytest.skip("CuPy sees no GPU (a GPU that only PyTorch sees does not run the walker)")
    data, labels = _problem(rng, (40, 36, 30))
    cpu = random_walker(data, labels, beta=30, tol=1e-6, return_full_prob=True, device="cpu")
    gpu = random_walker(data, labels, beta=30, tol=1e-6, return_full_prob=True, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)
    np.testing.assert_array_equal(random_walker(data, labels, beta=30, device="cuda", tol=1e-6),
                                  random_walker(data, labels, beta=30, device="cpu", tol=1e-6))
    # the red-black solve on the GPU (array steps) against the CPU's
    gpu_rb = random_walker(data, labels, beta=30, tol=1e-6, mode="rb", return_full_prob=True, device="cuda")
    np.testing.assert_allclose(gpu_rb, cpu, atol=1e-3)
    # the batched GPU solve: several cases of different sizes and label counts at once
    cases = [(data, labels), _problem(rng, (25, 31, 17), nlabels=3), _problem(rng, (33, 20))]
    batched = random_walker_batch([d for d, _ in cases], [lab for _, lab in cases], beta=30, tol=1e-6,
                                  device="cuda")
    for out, (d, lab) in zip(batched, cases):
        np.testing.assert_allclose(out, random_walker(d, lab, beta=30, tol=1e-6, return_full_prob=True,
                                                      device="cpu"), atol=1e-3)


@pytest.mark.parametrize("shape,negative", [((13, 11, 9), False), ((14, 12, 7), True), ((1, 15, 16), False)])
@pytest.mark.parametrize("generic", [False, True], ids=["compiled", "array-module"])
def test_red_black_schur_complement_matches_dense_reference(rng, shape, negative, generic):
    """Both sets of steps (Numba; the array operations the GPU runs, here on numpy)."""
    am = array_module("cpu")
    data, labels = _problem(rng, shape, negative=negative)
    # the graph as random_walker prunes it (unknowns cut off from every seed removed)
    seeds, nlabels, active, _ = seeds_mod.preprocess(labels)
    w = edge_weights(am, data[..., None].astype(np.float64), np.ones(3), 130.0)
    A, rhs, unknown = build_unknown_system(am, w, seeds, nlabels, active, dtype=np.float64)
    rb = RedBlackSystem(A, generic=generic)
    assert rb.compiled == (not generic)
    # plain reference: the Schur complement formed densely from the CSR matrix
    dense = A.tocsr().toarray()
    pos = np.argwhere(unknown)
    red = pos.sum(axis=1) % 2 == 0
    np.testing.assert_array_equal(np.flatnonzero(red), rb.red_rows)
    assert np.all(dense[np.ix_(red, red)] == np.diag(np.diag(dense)[red]))  # no red-red edges
    S = (dense[np.ix_(~red, ~red)]
         - dense[np.ix_(~red, red)] @ np.linalg.solve(dense[np.ix_(red, red)], dense[np.ix_(red, ~red)]))
    p = rng.normal(size=int((~red).sum()))
    out = np.empty_like(p)
    pSp = rb.apply_dot(p, out)
    np.testing.assert_allclose(out, S @ p, rtol=1e-9, atol=1e-12)
    assert float(pSp) == pytest.approx(p @ S @ p, rel=1e-9)
    np.testing.assert_allclose(1.0 / rb.inv_diag, np.diag(S), rtol=1e-9)
    # the solve returns the full system's solution, with the red values recovered
    x, info = conjugate_gradient(rb, rhs[:, 0], tol=1e-11, maxiter=10000)
    assert info == 0
    np.testing.assert_allclose(x, spsolve(A.tocsr().tocsc(), rhs[:, 0]), atol=1e-8)
    x_warm, info = conjugate_gradient(rb, rhs[:, 0], x, tol=1e-11, maxiter=10000)
    assert info == 0
    np.testing.assert_allclose(x_warm, x, atol=1e-8)


@pytest.mark.parametrize("device", ARRAY_DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_every_device_and_float_type_gives_the_direct_solves_answer(rng, device, dtype):
    data, labels = _problem(rng, (20, 18, 16))
    exact = random_walker(data.astype(np.float64), labels, beta=60, mode="bf", return_full_prob=True)
    got = random_walker(data.astype(dtype), labels, beta=60, tol=1e-6, mode="rb", return_full_prob=True,
                        device=device)
    np.testing.assert_allclose(got, exact, atol=1e-3)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_red_black_split_is_the_same_compiled_or_as_array_operations(rng, dtype):
    """The GPU's split (array operations, run here on numpy) gives the compiled split's
    arrays, and its solve the compiled solve's answer."""
    data, labels = _problem(rng, (14, 12, 9), negative=True)
    pr = segmentation._prepare(data, labels, None, None, None)
    A, rhs, _ = assemble_cpu(pr.data, pr.seeds, pr.active, pr.nlabels, pr.spacing, 130.0, dtype=dtype)
    compiled, generic = RedBlackSystem(A), RedBlackSystem(A, generic=True)
    for name in ("red_rows", "black_rows", "Rc", "Rw", "Rs", "Bc", "Bw", "Bs"):
        np.testing.assert_array_equal(getattr(generic, name), getattr(compiled, name), err_msg=name)
    np.testing.assert_allclose(generic.inv_Rd, compiled.inv_Rd, rtol=1e-12)
    np.testing.assert_allclose(generic.inv_diag, compiled.inv_diag, rtol=1e-6)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    x_c, info_c = conjugate_gradient(compiled, rhs[:, 0], tol=tol, maxiter=5000)
    x_g, info_g = conjugate_gradient(generic, rhs[:, 0], tol=tol, maxiter=5000, check_every=4)
    assert info_c == info_g == 0
    exact = spsolve(A.tocsr().astype(np.float64).tocsc(), rhs[:, 0].astype(np.float64))
    bound = 20 * tol * np.abs(exact).max() + (1e-6 if dtype == np.float32 else 0)
    assert np.abs(x_c - exact).max() < bound and np.abs(x_g - exact).max() < bound


def test_default_solve_is_closer_to_the_exact_answer_than_jacobi_cg():
    """At the same tol the default (red-black) solve's largest error is below that of
    Jacobi-CG, scikit-image's default method, on a phantom crop with the paper's seeds."""
    from extremefast.data.synthetic import make_phantom
    from extremefast.pseudo import extreme_points, geodesic_scribbles, get_preset, gradient_cost, scribble_seeds
    from extremefast.pseudo.pseudo_label import prepare_crop

    image, labels, affine = make_phantom(3)
    cfg = get_preset("paper").with_(crop_size=(64,) * 3)
    _, crop, _, pts = prepare_crop(image, np.diag(affine)[:3], extreme_points(labels == 5), cfg)
    pv = np.clip(np.rint(pts), 0, 63).astype(int)
    seeds = scribble_seeds(geodesic_scribbles(gradient_cost(crop), pv), cfg.r_foreground, cfg.r_background)
    exact = random_walker(crop, seeds, mode="cg_j", tol=1e-9, return_full_prob=True)[1]
    default = random_walker(crop, seeds, return_full_prob=True)[1]
    jacobi = random_walker(crop, seeds, mode="cg_j", return_full_prob=True)[1]
    assert np.abs(default - exact).max() < np.abs(jacobi - exact).max()


@pytest.mark.parametrize("shape,channels", [((13, 11, 9), 1), ((1, 15, 16), 1), ((12, 10, 8), 2), ((9, 1, 7), 3)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_compiled_assembly_matches_array_module_assembly(rng, shape, channels, dtype):

    am = array_module("cpu")
    data = rng.normal(size=shape + (channels,))
    labels = rng.integers(0, 4, size=shape).astype(np.int32)
    active = rng.random(shape) > 0.15
    spacing = (1.0, 1.5, 2.0)
    A, rhs, unknown = assemble_cpu(data, labels, active, 3, spacing, 90.0, dtype=dtype)
    ref_w = edge_weights(am, data.astype(dtype), spacing, 90.0)
    R, ref_rhs, ref_unknown = build_unknown_system(am, ref_w, labels, 3, active, dtype=dtype)
    tight = 1e-6 if dtype == np.float32 else 1e-13  # exp() of the two libraries may differ in the last bit
    np.testing.assert_array_equal(unknown, ref_unknown)
    np.testing.assert_array_equal(A.cols, R.cols)
    np.testing.assert_allclose(A.vals, R.vals, rtol=tight, atol=tight)
    np.testing.assert_allclose(rhs, ref_rhs, rtol=tight, atol=tight)
    np.testing.assert_allclose(A.coupling, R.coupling, rtol=tight, atol=tight)


@pytest.mark.parametrize("values", [[0, 1, 2], [-1, 0, 7, 3], [0, 5, 70000, -3], [True, False]])
def test_label_values_equal_numpy_unique(rng, values):
    rwm = seeds_mod
    labels = rng.choice(np.array(values), size=(9, 8, 7))
    out = rwm.label_values(labels)
    np.testing.assert_array_equal(out, np.unique(labels))
    assert out.dtype == labels.dtype
    # the compiled seed codes equal the plain ones
    np.testing.assert_array_equal(rwm.seed_codes(labels, out), rwm.seed_codes_plain(labels, out))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint16])
def test_seed_codes_and_full_probabilities_match_plain_references(rng, dtype):
    rwm = seeds_mod
    values = np.array([0, 1, 3, 9] + ([-2, -1] if np.issubdtype(dtype, np.signedinteger) else []), dtype=dtype)
    labels = rng.choice(values, size=(11, 7, 5), p=None)
    codes = rwm.seed_codes(labels, rwm.label_values(labels))
    np.testing.assert_array_equal(codes, rwm.seed_codes_plain(labels, np.unique(labels)))
    assert codes.dtype == np.int32 and set(np.unique(codes)) <= {-1, 0, 1, 2, 3}
    unknown = codes == 0
    X = rng.random((int(unknown.sum()), 3))
    np.testing.assert_array_equal(rwm.full_probabilities(codes, unknown, X),
                                  rwm.full_probabilities_plain(codes, unknown, X))
    # non-contiguous labels, and a single voxel
    for sub in (labels[:, ::2, 1:], labels[3:4, 2:3, :1]):
        vals = rwm.label_values(sub)
        np.testing.assert_array_equal(vals, np.unique(sub))
        np.testing.assert_array_equal(rwm.seed_codes(sub, vals), rwm.seed_codes_plain(sub, vals))


@pytest.mark.parametrize("mode", ["auto", "rb", "cg_j"])
@pytest.mark.parametrize("dtype_tol", [1e-3, 1e-6])
def test_same_bits_whatever_the_thread_count(rng, mode, dtype_tol):
    """Reductions sum fixed chunks in a fixed order (tol 1e-6 runs in float64)."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread only (NUMBA_NUM_THREADS=1): nothing to compare")
    data, labels = _problem(rng, (36, 33, 31))  # above the small-problem size: float32 at tol 1e-3
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            runs.append(random_walker(data, labels, beta=60, mode=mode, tol=dtype_tol, return_full_prob=True))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_batched_solve_equals_separate_solves(rng):
    """The stacked GPU path, run here on numpy: per-case step lengths make it the separate
    solves; cases of different sizes, dimensions, label counts, a warm start and a case
    with nothing to solve."""
    rwm = segmentation
    cases = [_problem(rng, (13, 11, 9)), _problem(rng, (17, 19)), _problem(rng, (9, 10, 11), nlabels=3),
             _problem(rng, (12, 12, 6), negative=True)]
    nothing = np.ones((5, 6, 7), dtype=np.int32)
    nothing[0] = 2
    datas = [d for d, _ in cases] + [rng.normal(size=nothing.shape)]
    labels = [lab for _, lab in cases] + [nothing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        separate = [random_walker(d, lab, beta=60, tol=1e-7, mode="cg_j", return_full_prob=True)
                    for d, lab in zip(datas, labels)]
        x0 = [None, separate[1][0], None, None, None]
        problems = [rwm._prepare(d, lab, None, None, g) for d, lab, g in zip(datas, labels, x0)]
        batched = rwm._solve_stacked(array_module("cpu"), problems, labels, 60, 1e-7, 3, 1e-3)
        public = random_walker_batch(datas, labels, beta=60, tol=1e-7, device="cpu")
    for ours, ref, pub in zip(batched, separate, public):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=2e-5)
        np.testing.assert_allclose(pub, ref, atol=2e-5)


@pytest.mark.exact_band
def test_batched_path_solves_small_cases_exactly_and_stacks_the_rest(rng, monkeypatch):
    """In the stacked path a case of at most 2**12 unknowns is solved exactly, alone, and the
    others are stacked as before: each answer is its single solve's."""
    cases = [_problem(rng, (12, 11, 9)), _problem(rng, (20, 19, 17)), _problem(rng, (9, 10, 11), nlabels=3)]
    sizes = [int(np.count_nonzero(lab == 0)) for _, lab in cases]
    assert sizes[0] <= segmentation._DIRECT < sizes[1] and sizes[2] <= segmentation._DIRECT
    stacked = []
    real = segmentation._stacked_columns

    def spy(am, problems, todo, *args):
        stacked.append(list(todo))
        return real(am, problems, todo, *args)

    monkeypatch.setattr(segmentation, "_stacked_columns", spy)
    labels = [lab for _, lab in cases]
    problems = [segmentation._prepare(d, lab, None, None, None) for d, lab in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = segmentation._solve_stacked(array_module("cpu"), problems, labels, 60, 1e-7, 3, 1e-3)
        separate = [random_walker(d, lab, beta=60, tol=1e-7, mode="cg_j", return_full_prob=True) for d, lab in cases]
    assert stacked == [[1]]
    for k, (ours, ref) in enumerate(zip(batched, separate)):
        np.testing.assert_allclose(ours, ref, atol=1e-12 if k != 1 else 2e-5)


def _batched(am, A, case, ncases):
    system = PreconditionedSystem(A, "jacobi", generic=True)
    system.steps = BatchedSteps(am.xp, system.dtype, case, ncases)
    return system


def test_batched_steps_stop_each_case_at_its_own_tolerance(rng):
    am = array_module("cpu")
    systems = []
    for shape, beta in (((14, 13, 12), 30.0), ((9, 8, 7), 900.0)):
        data, labels = _problem(rng, shape)
        w = edge_weights(am, data[..., None], np.ones(3), beta)
        systems.append(build_unknown_system(am, w, labels, 2, dtype=np.float64))
    A, case = stack_systems(am, [s[0] for s in systems])
    b = np.concatenate([s[1][:, 0] for s in systems])
    x, info = conjugate_gradient(_batched(am, A, case, 2), b, tol=1e-6, maxiter=10000)
    assert info == 0
    start = 0
    for A_c, rhs, _ in systems:
        stop = start + A_c.shape[0]
        res = np.linalg.norm(rhs[:, 0] - A_c.tocsr() @ x[start:stop])
        assert res <= 1e-6 * np.linalg.norm(rhs[:, 0]) * 1.0001
        start = stop
    _, info = conjugate_gradient(_batched(am, A, case, 2), b, tol=1e-12, maxiter=3)
    assert info == 3
    # the iterates are those of separate Jacobi-CG solves (the plain reference), step by step
    x5, _ = conjugate_gradient(_batched(am, A, case, 2), b, tol=1e-14, maxiter=5, check_every=1000)
    start = 0
    for A_c, rhs, _ in systems:
        stop = start + A_c.shape[0]
        ref = jacobi_cg(A_c.tocsr(), rhs[:, 0], 1e-14, 5)
        np.testing.assert_allclose(x5[start:stop], ref, rtol=1e-9, atol=1e-12)
        start = stop


def test_batch_bad_input_is_one_clear_error(rng):
    data, labels = _problem(rng, (8, 9, 10))
    with pytest.raises(InputError, match="2 images but 1 label"):
        random_walker_batch([data, data], [labels], device="cpu")
    with pytest.raises(InputError, match="x0 needs one entry per case"):
        random_walker_batch([data], [labels], x0=[None, None], device="cpu")
    with pytest.raises(InputError, match="NaN"):
        random_walker_batch([np.full_like(data, np.nan)], [labels], device="cpu")
    with pytest.raises(InputError, match="tol"):
        random_walker_batch([data], [labels], tol=2.0, device="cpu")


# --- scikit-image's answers where the drop-in must give them ------------------------------

def test_float_labels_negative_order_and_pass_through_follow_scikit_image(rng):
    data = rng.random((9, 10))
    labels = np.zeros((9, 10))
    labels[0, 0], labels[8, 9], labels[4, 4], labels[2, 7] = 3.0, 7.0, -5.0, -2.0
    ours = random_walker(data, labels, mode="bf")
    ref = sk_random_walker(data, labels.copy(), mode="bf")
    assert ours.dtype == labels.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)  # -5 -> -2, -2 -> -1, 3 -> 1, 7 -> 2
    full = np.ones((4, 5), dtype=np.int16)
    full[:, :2] = 4
    with pytest.warns(UserWarning, match="Returning provided labels"):
        np.testing.assert_array_equal(random_walker(rng.random((4, 5)), full), full)
    with pytest.warns(UserWarning, match="Returning provided labels"):
        prob = random_walker(rng.random((4, 5)), full, return_full_prob=True)
    with pytest.warns(UserWarning, match="Returning provided labels"):
        ref = sk_random_walker(rng.random((4, 5)), full.copy(), return_full_prob=True)
    assert prob.shape == ref.shape and prob.dtype == ref.dtype
    np.testing.assert_array_equal(prob, ref)


def test_unknowns_no_seed_reaches_are_minus_one_when_all_are_cut_off():
    markers = -np.ones((6, 6), dtype=np.int8)
    markers[1:3, 1:3] = 1
    markers[4, 4] = 0  # walled off by inactive pixels
    with pytest.warns(UserWarning, match="All unlabeled pixels are isolated"):
        out = random_walker(np.zeros((6, 6)), markers)
    assert out.dtype == np.int8 and out[4, 4] == -1 and (out[1:3, 1:3] == 1).all()


def test_cg_mg_without_pyamg_warns_and_runs_cg_j(rng, monkeypatch):
    from extremefast import xp

    data, labels = _problem(rng, (12, 11))
    real = xp.has_module
    monkeypatch.setattr(segmentation, "has_module", lambda name: False if name == "pyamg" else real(name))
    with pytest.warns(UserWarning, match='"cg_mg" not available'):
        out = random_walker(data, labels, mode="cg_mg", return_full_prob=True)
    np.testing.assert_allclose(out, random_walker(data, labels, mode="cg_j", return_full_prob=True))


def test_small_problems_get_scikit_image_default_answer(rng):
    """From 2**12 to 2**15 unknowns the default mode is scikit-image's Jacobi-CG in float64
    with every label's column solved: the same labels, probabilities to rounding."""
    data, labels = _problem(rng, (90, 80))
    assert segmentation._DIRECT < np.count_nonzero(labels == 0) < segmentation._SMALL
    np.testing.assert_array_equal(random_walker(data, labels), sk_random_walker(data, labels))
    np.testing.assert_allclose(random_walker(data, labels, return_full_prob=True),
                               sk_random_walker(data, labels, return_full_prob=True), atol=1e-9)


@pytest.mark.exact_band
@pytest.mark.parametrize("mode", segmentation.MODES)
def test_small_problems_are_solved_exactly_in_every_mode(rng, mode):
    """At most 2**12 unknowns every mode gives the exact answer (sparse LU): here pockets walled
    off by 1e-10 weights (beta 4000), where scikit-image's default Jacobi-CG stops far from it.
    The reference is scikit-image's own direct solve."""
    data, seeds = _walled_pockets(rng, 14)
    assert np.count_nonzero(seeds == 0) <= segmentation._DIRECT
    exact = sk_random_walker(data, seeds, beta=4000, mode="bf", return_full_prob=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iterate = sk_random_walker(data, seeds, beta=4000, return_full_prob=True)
        ours = random_walker(data, seeds, beta=4000, mode=mode, return_full_prob=True)
    assert np.abs(iterate - exact).max() > 0.01
    np.testing.assert_allclose(ours, exact, atol=1e-9)


def _isolated_problem(centre):
    """scikit-image's 7x7 problem of test_isolated_seeds (``centre`` 1: a seed at (1, 1) with
    no active neighbour) and test_isolated_area (0: an unknown voxel there, which no seed
    reaches): 14 unknowns in the corner block, weights down to 1e-10."""
    a = np.random.RandomState(0).random_sample((7, 7))
    mask = -np.ones(a.shape)
    mask[1, 1] = centre
    mask[3:, 3:] = 0
    mask[4, 4] = 2
    mask[6, 6] = 1
    return a, mask


@pytest.mark.exact_band
def test_isolated_seeds_and_area_keep_scikit_image_labels_and_are_exact(monkeypatch):
    """scikit-image's assertions on these two problems, without its expected range warning:
    the exact answer (14 unknowns) lies in [0, 1], where a Jacobi-CG stopped at tol 1e-3
    gives -0.53 at (3, 6) (exact: 0.4965). The reference is another algorithm: Jacobi-CG with
    the exact band off, run to tol 1e-12."""
    exact = {}
    for centre, label in ((1, 1), (0, 0)):
        a, mask = _isolated_problem(centre)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no range warning, nothing else
            assert random_walker(a, mask)[1, 1] == label
            exact[centre] = full = random_walker(a, mask, return_full_prob=True)
        assert full[0, 1, 1] == label and full[1, 1, 1] == 0
        assert full.min() >= 0.0 and full.max() <= 1.0
    monkeypatch.setattr(segmentation, "_DIRECT", 0)
    for centre, full in exact.items():
        a, mask = _isolated_problem(centre)
        iterated = random_walker(a, mask, mode="cg_j", tol=1e-12, return_full_prob=True)
        np.testing.assert_allclose(full, iterated, atol=1e-8)
    assert exact[1][0, 3, 6] == pytest.approx(0.4965, abs=1e-4)


# --- robust by construction ---------------------------------------------------------------

def _walled_pockets(rng, n=40):
    """beta 4000 on an image of bright walls: many voxels whose six weights are all ~1e-10,
    the structure on which the float32 reduced solve of the assembled form diverged."""
    data = (rng.random((n, n, n)) > 0.55).astype(np.float64)
    seeds = np.zeros(data.shape, dtype=np.int32)
    seeds[:3] = 1
    seeds[-3:] = 2
    return data, seeds


@pytest.mark.parametrize("mode", ["auto", "rb", "cg_j"])
def test_ill_conditioned_solve_converges_within_range(rng, mode):
    data, seeds = _walled_pockets(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no breakdown, no fallback, no out-of-range answer
        prob = random_walker(data, seeds, beta=4000, mode=mode, return_full_prob=True)
    assert np.isfinite(prob).all()
    assert prob.min() >= -1e-3 and prob.max() <= 1 + 1e-3


@pytest.mark.parametrize("generic", [False, True], ids=["compiled", "array-module"])
def test_assembled_float32_reduced_form_is_what_breaks_down(rng, generic):
    """The breakdown test catches a non-SPD operator: the reduced system with its black
    diagonal perturbed below the Schur complement's loses definiteness, and the driver says
    so (info -1) instead of iterating to garbage; on the array module's path (CuPy on a GPU)
    as well, where the curvature stays on the device until a convergence test."""
    data, seeds = _walled_pockets(rng, 24)
    pr = segmentation._prepare(data, seeds, None, None, None)
    A, rhs, _ = assemble_cpu(pr.data, pr.seeds, pr.active, pr.nlabels, pr.spacing, 4000.0, dtype=np.float32)
    rb = RedBlackSystem(A, generic=generic)
    rb.Bs = rb.Bs - 0.5 * (rb.Bs + rb.Bw.sum(axis=0))  # an indefinite operator
    _, info = conjugate_gradient(rb, rhs[:, 1], tol=1e-3, maxiter=5000)
    assert info == BREAKDOWN


def test_breakdown_in_float32_falls_back_to_float64_with_a_warning(rng, monkeypatch):
    data, labels = _problem(rng, (36, 33, 31))
    ref = random_walker(data, labels, beta=60, mode="bf", return_full_prob=True)
    real = segmentation._solve_columns

    def broken_float32(am, A, B, solver, tol, maxiter, guesses):
        X, infos = real(am, A, B, solver, tol, maxiter, guesses)
        return X, [BREAKDOWN if A.dtype == np.float32 else i for i in infos]

    monkeypatch.setattr(segmentation, "_solve_columns", broken_float32)
    with pytest.warns(RuntimeWarning, match="solved again in float64"):
        out = random_walker(data, labels, beta=60, return_full_prob=True)
    np.testing.assert_allclose(out, ref, atol=1e-2)


def test_iteration_cap_stops_and_says_so(rng):
    data, labels = _problem(rng, (36, 33, 31))
    with pytest.warns(UserWarning, match="Conjugate gradient convergence to tolerance not achieved"):
        random_walker(data, labels, maxiter=3)


def test_the_package_imports_without_torch_and_its_modules_are_reachable():
    import subprocess
    import sys

    code = ("import sys, extremefast, extremefast.random_walk._redblack as rb; "
            "from extremefast import random_walker; assert callable(random_walker); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_case_the_batched_solve_fails_is_solved_again_alone(rng, monkeypatch):
    """The batched path once returned what its stacked solve gave, broken down or not (with a
    RuntimeWarning of its own); now such a case goes through the single path's retries."""
    cases = [_problem(rng, (30, 28, 26)) for _ in range(2)]
    alone = [random_walker(d, lab, beta=60, tol=1e-6, return_full_prob=True) for d, lab in cases]
    real = segmentation.conjugate_gradient

    def stacked_breaks_down(system, b, x0=None, **kw):
        x, info = real(system, b, x0, **kw)
        return (x * 0 + 7.0, BREAKDOWN) if isinstance(system.steps, BatchedSteps) else (x, info)

    monkeypatch.setattr(segmentation, "conjugate_gradient", stacked_breaks_down)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the single path converges: no warning is left to give
        # the stacked path itself, as a GPU runs it (the public function solves case by case on a CPU)
        problems = [segmentation._prepare(d, lab, None, None, None) for d, lab in cases]
        batched = segmentation._solve_stacked(array_module("cpu"), problems, [lab for _, lab in cases], 60, 1e-6, 3,
                                              1e-3)
    for got, want in zip(batched, alone):
        np.testing.assert_allclose(got, want, atol=1e-4)
