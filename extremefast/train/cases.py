"""Training cases held in memory: normalised image, clicks, mask (when there is one), pseudo label.

The clicks come from one of two places (:func:`load_cases`):

* the annotator's points files (``points_dir``): the six clicks of each case as they were
  made; a mask, where the case has one, is kept for reporting only;
* the masks (no ``points_dir``): the mask's extreme points, as the paper simulates clicks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pseudo.clicks import case_clicks, case_problems
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
    # the scan's own intensities, kept until round 0 has made its pseudo label: the random walker
    # there crops them before windowing, as `extremefast pseudo-label` does (windowing first
    # blurs thin bright structures, the mandible, into ramps the geodesic path avoids)
    raw: np.ndarray | None = None


def load_cases(dataset, cases, label: int | None, window, max_cases: int | None = None,
               points: dict | None = None, skipped: dict | None = None, notes: dict | None = None) -> list[CaseData]:
    """Load ``cases`` and normalise them with ``window`` (see :func:`window_for_modality`).

    With ``points`` ({case name: points file}) the clicks are read from the files and cases
    without one are left out; a case's mask (label ``label``) is kept only to report Dice.
    Without, the clicks are the extreme points of each mask and cases whose mask lacks the
    organ are left out. A case that cannot be used (:func:`case_problems`) is left out too, with
    its one-line reason in ``skipped`` ({case name: reason}); ``notes`` gets the notes on the
    cases kept.
    """
    out = []
    skipped = {} if skipped is None else skipped
    notes = {} if notes is None else notes
    for case in cases:
        if points is not None and case.name not in points:
            continue
        image = dataset.load_image(case)
        found = case_clicks(dataset, case, image, label, None if points is None else points[case.name])
        if found is None:
            skipped[case.name] = f"no voxel of label {label} in its mask"
            continue
        clicks, mask, source = found
        reason, case_notes = case_problems(clicks, image.shape, image.spacing, mask)
        if reason is not None:
            skipped[case.name] = reason
            continue
        if case_notes:
            notes[case.name] = case_notes
        norm = normalise_intensity(image.array, window)
        out.append(CaseData(case.name, norm, image.spacing, image.affine, mask, clicks, source, raw=image.array))
        if max_cases is not None and len(out) >= max_cases:
            break
    return out
