"""Training cases held in memory: normalised image, mask, clicks, current pseudo label."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pseudo.extreme_points import extreme_points
from ..pseudo.pseudo_label import normalise_intensity


@dataclass
class CaseData:
    name: str
    image: np.ndarray        # intensity-normalised to [0, 1], original grid
    spacing: tuple
    affine: np.ndarray
    mask: np.ndarray         # the real mask: clicks come from it; Dice reported against it
    points: np.ndarray       # the six clicks (extreme points), voxel indices
    pseudo: np.ndarray | None = None  # current pseudo label, original grid, float32


def load_cases(dataset, cases, label: int, window, max_cases: int | None = None) -> list[CaseData]:
    """Load and normalise the cases that contain the organ; others are skipped."""
    out = []
    modality_ct = dataset.modality.upper() == "CT"
    for case in cases:
        image, labels = dataset.load_case(case)
        mask = labels.array == label
        if not mask.any():
            continue
        norm = normalise_intensity(image.array, window if modality_ct else None)
        out.append(CaseData(case.name, norm, image.spacing, image.affine, mask, extreme_points(mask)))
        if max_cases is not None and len(out) >= max_cases:
            break
    return out
