"""Per-case facts of a data set; reading every case is what validates it."""
from __future__ import annotations

import numpy as np

from .dataset import Dataset


def dataset_info(ds: Dataset) -> dict:
    rows = []
    for case in ds.cases:
        if case.label_path is None:
            image = ds.load_image(case)
            counts = {}
        else:
            image, label = ds.load_case(case)
            values, n = np.unique(label.array, return_counts=True)
            counts = {int(v): int(c) for v, c in zip(values, n) if v != 0}
        rows.append({"case": case.name, "shape": list(image.shape), "spacing": list(image.spacing),
                     "label_voxels": counts})
    return {"root": str(ds.root), "name": ds.name, "labels": ds.labels, "cases": rows}
