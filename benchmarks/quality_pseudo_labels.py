"""Pseudo-label quality of the presets on phantoms and the real scans in ../shared/data.

Dice of the random-walker pseudo label (exact extreme points as clicks) against the full
mask, per organ, for the 'paper' and 'default' presets (docs/history.md).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from _harness import parser, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cases():
    from extremefast.data import open_msd
    from extremefast.data.synthetic import make_phantom

    for s in range(3):
        image, labels, affine = make_phantom(100 + s)
        for organ, name in ((1, "spleen"), (5, "liver"), (3, "left kidney")):
            yield f"phantom {100 + s} {name}", image, np.diag(affine)[:3], labels == organ, (-160.0, 240.0)
    for folder, organs in (("ct_abdomen", (1, 5, 7)), ("mr_abdomen", (1, 2, 3, 4, 5, 7))):
        if not (SHARED / folder).exists():
            continue
        ds = open_msd(SHARED / folder)
        image, labels = ds.load_case(ds.cases[0])
        window = (-160.0, 240.0) if ds.modality.upper() == "CT" else None
        for organ in organs:
            yield f"{folder} {ds.organ_name(organ)}", image.array, image.spacing, labels.array == organ, window


def main():
    args = parser(__doc__).parse_args()
    from extremefast.metrics import dice
    from extremefast.pseudo import extreme_points, get_preset, pseudo_label_from_points

    warnings.simplefilter("ignore")
    rows = []
    for name, image, spacing, mask, window in cases():
        row = {"case": name}
        for preset in ("paper", "default"):
            pl = pseudo_label_from_points(image, spacing, extreme_points(mask), get_preset(preset, window=window))
            row[preset] = dice(pl.in_image_space(), mask)
        rows.append(row)
    rows.append({"case": "mean", "paper": float(np.mean([r["paper"] for r in rows])),
                 "default": float(np.mean([r["default"] for r in rows]))})
    report("pseudo-label Dice per preset (exact extreme points, 128^3 crop)", rows, args)


if __name__ == "__main__":
    main()
