"""Training cases held in memory: normalised image, clicks, mask (when there is one), pseudo label.

The clicks come from one of two places (:func:`load_cases`):

* the annotator's points files (``points_dir``): the six clicks of each case as they were
  made; a mask, where the case has one, is kept for reporting only;
* the masks (no ``points_dir``): the mask's extreme points, as the paper simulates clicks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.points import list_points_files, points_case_name, points_file_for, read_points
from ..errors import DataError
from ..imageio import file_affine
from ..pseudo.extreme_points import extreme_points
from ..pseudo.pseudo_label import normalise_intensity


@dataclass
class CaseData:
    name: str
    image: np.ndarray        # intensity-normalised to [0, 1], original grid
    spacing: tuple
    affine: np.ndarray
    mask: np.ndarray | None  # the real mask, for reporting (and the clicks when no points file)
    points: np.ndarray       # the six clicks (extreme points), voxel indices
    clicks_from: str = "mask"  # "mask" or the points file they were read from
    pseudo: np.ndarray | None = None  # current pseudo label, original grid, float32


def pair_points(dataset, points_dir) -> tuple[dict, list[str]]:
    """({case name: points file}, names of cases without one) for the cases of ``dataset``.

    A points file whose case is not in the data set is an error naming it: a click file
    without its scan is a typo or a missing scan, never something to ignore.
    """
    points_dir = Path(points_dir)
    names = {c.name for c in dataset.cases}
    orphans = [p.name for p in list_points_files(points_dir)
               if points_case_name(p) not in names and points_case_name(p).removesuffix("_0000") not in names]
    if orphans:
        raise DataError(f"{points_dir}: no scan in {dataset.root} for the points file(s) {', '.join(orphans[:5])}; "
                        "name each points file after its scan (CASE.mrk.json beside CASE.nii.gz)")
    found = {c.name: points_file_for(points_dir, c.name) for c in dataset.cases}
    paired = {n: p for n, p in found.items() if p is not None}
    if not paired:
        raise DataError(f"{points_dir}: no points file matches a scan of {dataset.root} (expected CASE.mrk.json or "
                        "CASE.json)")
    return paired, sorted(n for n, p in found.items() if p is None)


def load_cases(dataset, cases, label: int | None, window, max_cases: int | None = None,
               points: dict | None = None) -> list[CaseData]:
    """Load ``cases`` and normalise them with ``window`` (see :func:`window_for_modality`).

    With ``points`` ({case name: points file}) the clicks are read from the files and cases
    without one are left out; a case's mask (label ``label``) is kept only to report Dice.
    Without, the clicks are the extreme points of each mask and cases whose mask lacks the
    organ are left out.
    """
    out = []
    for case in cases:
        if points is not None and case.name not in points:
            continue
        image = dataset.load_image(case)
        mask = None
        if label is not None and case.label_path is not None:
            mask = dataset.load_labels(case, image).array == label
            if not mask.any():
                mask = None
        if points is not None:
            clicks = read_points(points[case.name], image.affine, image.shape, voxel_affine=file_affine(image))
            source = str(points[case.name])
        elif mask is None:
            continue
        else:
            clicks, source = extreme_points(mask), "mask"
        norm = normalise_intensity(image.array, window)
        out.append(CaseData(case.name, norm, image.spacing, image.affine, mask, clicks, source))
        if max_cases is not None and len(out) >= max_cases:
            break
    return out
