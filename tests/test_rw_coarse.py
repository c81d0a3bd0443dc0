"""The random walker's coarse correction (random_walk/_coarse.py): compiled pieces against
their SciPy references, the Galerkin property, and the real-problem battery."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from extremefast import random_walker
from extremefast.random_walk._coarse import (THETA, CoarseSpace, _coarse_entries, coarse_matrix_plain, residual,
                                             residual_array, strong_components, strong_components_plain)
from extremefast.random_walk._laplacian import assemble_cpu
from extremefast.random_walk.segmentation import _prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _real_problems as rp  # noqa: E402

from conftest import FLOAT_DTYPES


def _system(rng, shape, beta=4000.0, dtype=np.float64, inactive=0.0):
    """A walled-off system: a piecewise-constant image with noise at high beta gives
    weights from 1e-10 to 1 and many weakly linked regions."""
    blocks = rng.integers(0, 4, size=tuple(-(-s // 3) for s in shape)).astype(np.float64)
    data = np.kron(blocks, np.ones((3,) * len(shape)))[tuple(slice(0, s) for s in shape)]
    data = data + 0.02 * rng.standard_normal(shape)
    labels = np.zeros(shape, dtype=np.int32)
    labels[0] = 1
    labels[-1] = 2
    if inactive:
        labels[(rng.random(shape) < inactive) & (labels == 0)] = -1
    prep = _prepare(data, labels, None, None, None)
    A, rhs, unknown = assemble_cpu(prep.data, prep.seeds, prep.active, prep.nlabels, prep.spacing, beta, dtype=dtype)
    return A, rhs


@pytest.mark.parametrize("shape,inactive", [((3, 1, 2), 0.0), ((7, 5, 4), 0.0), ((12, 9, 11), 0.1), ((20, 3), 0.0)])
@pytest.mark.parametrize("theta", [1e-6, THETA, 0.9])
def test_strong_components_match_scipy(rng, shape, inactive, theta):
    A, _ = _system(rng, shape, inactive=inactive)
    comp, size = strong_components(A.cols, A.vals, theta)
    ref, ref_size = strong_components_plain(A, theta)
    assert size == ref_size
    np.testing.assert_array_equal(comp, ref)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_coarse_matrix_matches_galerkin_product(rng, dtype):
    A, _ = _system(rng, (10, 8, 9), dtype=dtype, inactive=0.05)
    comp, size = strong_components(A.cols, A.vals, THETA)
    assert 1 < size < A.shape[0]
    rows, cols, data, diag = _coarse_entries(A.cols, A.vals, A.coupling, comp, size)
    dense = np.zeros((size, size))
    np.add.at(dense, (rows, cols), data)
    dense[np.diag_indices(size)] += diag
    np.testing.assert_allclose(dense, coarse_matrix_plain(A, comp, size), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_residual_compiled_equals_array_operations_and_csr(rng, dtype):
    A, rhs = _system(rng, (9, 7, 6), dtype=dtype)
    x = rng.random(A.shape[0])
    b = rhs[:, 1].astype(np.float64)
    r = residual(A, x, b)
    np.testing.assert_allclose(r, residual_array(np, A, x, b), rtol=1e-12, atol=1e-15)
    # the CSR form holds the stored diagonal, rounded to the dtype
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(r, b - A.tocsr().astype(np.float64) @ x, rtol=0, atol=atol)


def test_correction_is_the_galerkin_projection(rng):
    """After one correction the residual sums to zero on every component, and the error's
    energy norm never grows (the correction is an A-orthogonal projection)."""
    import scipy.sparse.linalg as spla

    A, rhs = _system(rng, (14, 12, 10))
    b = rhs[:, 1]
    csr = A.tocsr()
    exact = spla.spsolve(csr.tocsc(), b)
    coarse = CoarseSpace(A)
    for _ in range(3):
        x = exact + rng.standard_normal(exact.shape)
        corrected = coarse.correct(x, b)
        sums = np.bincount(coarse.comp, weights=residual(A, corrected, b), minlength=coarse.size)
        assert np.abs(sums).max() < 1e-9 * np.abs(b).sum()
        e0, e1 = x - exact, corrected - exact
        assert e1 @ (csr @ e1) <= e0 @ (csr @ e0) * (1 + 1e-9)
    # the coarse solution of b is the best piecewise-constant answer: correcting it is a no-op
    first = coarse.solve(b)
    np.testing.assert_allclose(coarse.correct(first, b), first, atol=1e-9)


# A few real problems of the battery (benchmarks/_real_problems.py), the smaller ones, so CI stays short:
# an uncertainty band at beta 4000, a small parotid and the pancreas at beta 4000, a lung crop below 2**15.
REAL = [("ct_sarcoma", "STS_007", 1, "band-4000"), ("ct_headneck", "pt_2", 4, "default"),
        ("ct_abdomen", "ts_ct_contrast_001", 7, "default"), ("ct_lung_tumour", "radiomics_lung_001", 1, "default")]


@pytest.mark.parametrize("entry", REAL, ids=lambda e: f"{e[1]}-{e[3]}")
def test_real_problems_match_the_float64_reference(shared_data, entry):
    problem = rp.make_problem(*entry)
    ref = rp.reference_probability(problem)
    unknown = problem.seeds == 0
    modes = ["rb"] + ([None] if problem.unknowns >= 2**15 else [])  # below 2**15 the default is scikit-image's
    for mode in modes:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no range, convergence or breakdown warning
            p = random_walker(problem.data, problem.seeds, beta=problem.beta, spacing=problem.spacing, mode=mode,
                              return_full_prob=True, device="cpu")
        assert -1e-3 <= p.min() and p.max() <= 1 + 1e-3
        differ = np.mean((p[1][unknown] >= 0.5) != (ref[unknown] >= 0.5))
        assert differ <= 1e-3, (mode, differ)
