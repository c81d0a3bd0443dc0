"""Random-walker problems from the real scans in ../shared/data: the battery that the
random-walker benchmark and tests solve.

Each problem is what the pipeline hands the random walker on a real case: the crop around
the organ (exact extreme points as clicks) with the seeds of a pseudo-label preset
('paper': beta 130, radii 2 and 30; 'default': beta 4000, background outside the clicks'
box), or the uncertainty band of a refresh (paper step 4: a prediction's P >= 0.5 and
P < 0.5 eroded by 4 voxels; the prediction here is the mask blurred and shifted by a few
voxels, so the band has the width and shape of a network's).

The float64 reference of a problem is solved tightly (pyamg-preconditioned CG to a relative
residual of 1e-12): :func:`reference_probability`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# (folder, case, label, kind): kind is a preset name or "band-<beta>"
BATTERY = (
    ("ct_sarcoma", "STS_002", 1, "paper"), ("ct_sarcoma", "STS_002", 1, "default"),
    ("ct_sarcoma", "STS_007", 1, "paper"), ("ct_sarcoma", "STS_007", 1, "default"),
    ("ct_sarcoma", "STS_013", 1, "default"), ("ct_sarcoma", "STS_018", 1, "default"),
    ("ct_sarcoma", "STS_021", 1, "default"), ("ct_sarcoma", "STS_023", 1, "default"),
    ("ct_sarcoma", "STS_030", 1, "default"), ("ct_sarcoma", "STS_046", 1, "default"),
    ("ct_sarcoma", "STS_007", 1, "band-4000"),
    ("ct_headneck", "pt_201", 7, "paper"), ("ct_headneck", "pt_201", 7, "default"),
    ("ct_headneck", "pt_201", 4, "default"), ("ct_headneck", "pt_201", 7, "band-130"),
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


def reference_probability(problem: Problem) -> np.ndarray:
    """P(foreground) on the crop, solved tightly in float64 (pyamg smoothed aggregation as a
    CG preconditioner, relative residual 1e-12), from this package's assembly (whose
    weights the tests check against scikit-image's)."""
    import pyamg

    from extremefast.random_walk._laplacian import assemble_cpu
    from extremefast.random_walk.segmentation import _prepare

    prep = _prepare(problem.data, problem.seeds, problem.spacing, None, None)
    A, rhs, unknown = assemble_cpu(prep.data, prep.seeds, prep.active, prep.nlabels, prep.spacing, problem.beta,
                                   dtype=np.float64)
    csr = A.tocsr()
    ml = pyamg.smoothed_aggregation_solver(csr, symmetry="hermitian", max_coarse=500)
    b = rhs[:, 1]
    residuals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = ml.solve(b, tol=1e-12, maxiter=500, accel="cg", residuals=residuals)
    out = (problem.seeds == 2).astype(np.float64)
    out[unknown.reshape(problem.seeds.shape)] = x
    return out
