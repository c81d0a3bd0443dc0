"""Random-walker problems from the real scans in ../shared/data: the battery that the
random-walker benchmark and tests solve.

Each problem is what the pipeline hands the random walker on a real case: the crop around
the organ (exact extreme points as clicks) with the seeds of a pseudo-label preset
('paper': beta 130, radii 2 and 30; 'default': beta 4000, background outside the clicks'
box), or the uncertainty band of a refresh (paper step 4: a prediction's P >= 0.5 and
P < 0.5 eroded by 4 voxels; the prediction here is the mask blurred and shifted by a few
voxels, so the band has the width and shape of a network's).

The float64 reference of a problem is solved tightly (deflated CG to a relative residual of
1e-10): :func:`reference_probability`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"

# (folder, case, label, kind): kind is a preset name or "band-<beta>"
BATTERY = (
    ("ct_sarcoma", "STS_002", 1, "paper"), ("ct_sarcoma", "STS_002", 1, "default"),
    ("ct_sarcoma", "STS_007", 1, "paper"), ("ct_sarcoma", "STS_007", 1, "default"),
    ("ct_sarcoma", "STS_013", 1, "default"), ("ct_sarcoma", "STS_018", 1, "default"),
    ("ct_sarcoma", "STS_021", 1, "default"), ("ct_sarcoma", "STS_023", 1, "default"),
    ("ct_sarcoma", "STS_030", 1, "default"), ("ct_sarcoma", "STS_046", 1, "default"),
    ("ct_sarcoma", "STS_007", 1, "band-4000"),
    ("ct_headneck", "pt_2", 7, "paper"), ("ct_headneck", "pt_2", 7, "default"),
    ("ct_headneck", "pt_2", 4, "default"), ("ct_headneck", "pt_2", 7, "band-130"),
    ("ct_abdomen", "ts_ct_contrast_001", 1, "paper"), ("ct_abdomen", "ts_ct_contrast_001", 1, "default"),
    ("ct_abdomen", "ts_ct_contrast_001", 7, "default"), ("ct_abdomen", "ts_ct_contrast_001", 5, "band-4000"),
    ("mr_abdomen", "ts_mr_001", 5, "default"), ("mr_abdomen", "ts_mr_001", 2, "paper"),
    ("ct_lung_tumour", "radiomics_lung_001", 1, "default"), ("ct_lung_tumour", "radiomics_lung_001", 1, "band-130"),
)


@dataclass
class Problem:
    name: str
    data: np.ndarray       # the crop the walker sees, in [0, 1]
    seeds: np.ndarray      # 0 unknown, 1 background, 2 foreground
    beta: float
    spacing: np.ndarray | None

    @property
    def unknowns(self) -> int:
        return int((self.seeds == 0).sum())


def available() -> bool:
    return SHARED.is_dir()


def make_problem(folder, case, label, kind, size=128) -> Problem:
    from extremefast.data import open_msd
    from extremefast.pseudo import extreme_points, get_preset
    from extremefast.pseudo.pseudo_label import prepare_crop, random_walker_problem

    ds = open_msd(SHARED / folder)
    entry = next(c for c in ds.cases if c.name == case)
    image, labels = ds.load_case(entry)
    mask = labels.array == label
    window = (-160.0, 240.0) if ds.modality.upper() == "CT" else None
    preset = "paper" if kind.startswith("band") else kind
    config = get_preset(preset, window=window, crop_size=(size,) * 3)
    points = extreme_points(mask)
    box, crop, crop_spacing, pts = prepare_crop(image.array, image.spacing, points, config)
    name = f"{folder}/{case} {ds.organ_name(label)} {kind}"
    if not kind.startswith("band"):
        p = random_walker_problem(crop, pts, crop_spacing, config)
        return Problem(name, p.data, p.seeds, config.beta, p.spacing)
    from scipy import ndimage as ndi

    from extremefast.pseudo.roi import crop_resample
    from extremefast.pseudo.seeds import uncertainty_seeds

    m = crop_resample(mask.astype(np.float32), box, order=1)
    prediction = ndi.shift(ndi.gaussian_filter(m, 2.0), (2.0, -1.5, 1.0), order=1)
    return Problem(name, crop, uncertainty_seeds(prediction, 4.0), float(kind.split("-")[1]), None)


def problems(selection=BATTERY, size=128):
    for folder, case, label, kind in selection:
        yield make_problem(folder, case, label, kind, size)


def reference_probability(problem: Problem, tol=1e-10, maxiter=20000) -> np.ndarray:
    """P(foreground) on the crop, solved tightly in float64: deflated CG (Nicolaides 1987;
    Saad et al. 2000, "A deflated version of the conjugate gradient algorithm") with the
    strong components of the graph (edges above 0.1) as the deflation space and Jacobi
    preconditioning, to a relative residual of ``tol``, written with SciPy's sparse
    products (independent of the package's kernels; only the assembly is shared, and the
    tests check its weights against scikit-image's). Stored under ``.cache/`` beside this
    file, keyed by the problem's arrays.

    Why not a multigrid reference: on the sarcoma crop STS_007 (default preset) pyamg's
    Ruge-Stueben and smoothed-aggregation CG stopped after 300 iterations at 9e-8 and
    2e-8 and disagreed by 0.82 on 68 voxels, a region linked to the rest by ~1e-7 edges;
    an exact sparse solve of that region given its surroundings agreed with this
    reference to 9e-8.
    """
    import hashlib

    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from extremefast.random_walk._coarse import strong_components_plain
    from extremefast.random_walk._laplacian import assemble_cpu
    from extremefast.random_walk.segmentation import _prepare

    key = hashlib.sha1()
    for a in (problem.data, problem.seeds, np.float64(problem.beta),
              np.asarray(problem.spacing if problem.spacing is not None else [], dtype=np.float64), np.float64(tol)):
        key.update(np.ascontiguousarray(a).tobytes())
    stored = CACHE / f"{key.hexdigest()}.npy"
    if stored.exists():
        return np.load(stored)
    prep = _prepare(problem.data, problem.seeds, problem.spacing, None, None)
    A, rhs, unknown = assemble_cpu(prep.data, prep.seeds, prep.active, prep.nlabels, prep.spacing, problem.beta,
                                   dtype=np.float64)
    csr = A.tocsr()
    n = csr.shape[0]
    comp, size = strong_components_plain(A, 0.1)
    P = sp.csr_matrix((np.ones(n), (np.arange(n), comp)), shape=(n, size))
    AP = (csr @ P).tocsr()
    APt = AP.T.tocsr()
    lu = spla.splu((P.T @ AP).tocsc(), permc_spec="MMD_AT_PLUS_A")
    inv_diag = 1.0 / csr.diagonal()
    b = rhs[:, 1].astype(np.float64)
    x = P @ lu.solve(P.T @ b)
    r = b - csr @ x
    z = inv_diag * r
    p = z - P @ lu.solve(APt @ z)
    rz = r @ z
    bnorm = np.linalg.norm(b)
    for _ in range(maxiter):
        if np.linalg.norm(r) <= tol * bnorm:
            break
        w = csr @ p
        alpha = rz / (p @ w)
        x += alpha * p
        r -= alpha * w
        z = inv_diag * r
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p - P @ lu.solve(APt @ z)
    else:
        raise RuntimeError(f"{problem.name}: the reference did not reach {tol:g} in {maxiter} iterations")
    out = (problem.seeds == 2).astype(np.float64)
    out[unknown.reshape(problem.seeds.shape)] = x
    CACHE.mkdir(exist_ok=True)
    np.save(stored, out)
    return out
