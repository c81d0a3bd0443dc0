"""Pseudo-label Dice on the shared real collections, for one setting at a time.

Each case: the organ's exact extreme points as clicks, the pseudo label of the given
preset with the given overrides, Dice against the mask in the scan's grid. Collections:
ct_sarcoma (tumour, every case or ``--cases N``), ct_headneck (mandible and right parotid
of the first ``--headneck-cases`` cases), ct_abdomen and mr_abdomen (every organ of their one case),
ct_lung_tumour (its one tumour).
``--set key=value`` overrides a PseudoLabelConfig field (repeatable); the tries and their
figures are in docs/history.md.

    python benchmarks/pseudo_label_tries.py --cases 25 --set beta=2000 --json out.json
"""
from __future__ import annotations

import ast
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import parser, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ORGANS = {"ct_sarcoma": (1,), "ct_lung_tumour": (1,), "ct_headneck": (7, 3), "ct_abdomen": (1, 5, 7), "mr_abdomen": (1, 2, 3, 4, 5, 7)}


def cases(collections, n_cases, n_headneck, organs=ORGANS):
    from extremefast.data import open_msd

    for folder in collections:
        if not (SHARED / folder).exists():
            continue
        ds = open_msd(SHARED / folder)
        for case in ds.cases[: {"ct_sarcoma": n_cases, "ct_headneck": n_headneck}.get(folder, 1)]:
            image, labels = ds.load_case(case)
            for organ in organs[folder]:
                mask = labels.array == organ
                if mask.any():
                    yield folder, f"{case.name} {ds.organ_name(organ)}", image, mask, ds.modality


def parse_overrides(items):
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main():
    p = parser(__doc__)
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", help="PseudoLabelConfig field=value")
    p.add_argument("--cases", type=int, default=25, help="ct_sarcoma cases")
    p.add_argument("--headneck-cases", type=int, default=8, help="ct_headneck cases")
    p.add_argument("--headneck-organs", default="7,3", help="ct_headneck label values (mandible 7, right parotid 3)")
    p.add_argument("--collections", default="ct_sarcoma,ct_headneck,ct_abdomen,mr_abdomen,ct_lung_tumour")
    args = p.parse_args()
    from extremefast.metrics import dice
    from extremefast.pseudo import extreme_points, get_preset, pseudo_label_from_points
    from extremefast.pseudo.pseudo_label import window_for_modality

    warnings.simplefilter("ignore")
    overrides = parse_overrides(args.set)
    rows, t0 = [], time.perf_counter()
    organs = {**ORGANS, "ct_headneck": tuple(int(v) for v in args.headneck_organs.split(","))}
    for folder, name, image, mask, modality in cases(args.collections.split(","), args.cases, args.headneck_cases, organs):
        config = get_preset(args.preset, **overrides)
        config = config.with_(window=window_for_modality(config.window, modality))
        pl = pseudo_label_from_points(image.array, image.spacing, extreme_points(mask), config)
        rows.append({"collection": folder, "case": name, "dice": dice(pl.in_image_space(), mask)})
    groups = {}
    for r in rows:
        key = r["collection"] + (" " + r["case"].split(" ", 1)[1] if r["collection"] == "ct_headneck" else "")
        groups.setdefault(key, []).append(r["dice"])
    summary = [{"group": k, "n": len(v), "mean": float(np.mean(v)), "std": float(np.std(v)),
                "median": float(np.median(v))} for k, v in groups.items()]
    summary.append({"group": "seconds", "n": len(rows), "mean": time.perf_counter() - t0, "std": 0.0, "median": 0.0})
    print("overrides:", overrides)
    for r in rows:
        print(f"  {r['collection']:12s} {r['case']:32s} {r['dice']:.3f}")
    report(f"pseudo-label Dice, preset {args.preset} {overrides}", summary, args)


if __name__ == "__main__":
    main()
