"""The annotator's workflow on a real collection, end to end, against the run that had the masks.

1. The collection as an annotator has it: scans without masks, six clicks per scan as 3D Slicer
   markups (the masks' extreme points moved by 2 mm noise; ``clicks_collection.py``).
2. ``extremefast train --data SCANS --points CLICKS --out W/points`` -- no other option, timed.
3. ``extremefast train --data DATA --out W/masks`` -- the same data with its masks (clicks
   simulated from them, as the paper evaluates), same sizes.
4. Both models ``predict`` the validation cases (never trained on) from the annotator's clicks;
   ``pseudo-label --points`` gives the random walker's labels of the same cases from the same
   clicks; every mask is scored with ``evaluate`` against the real masks.

    python benchmarks/clicks_workflow.py --data ../shared/data/ct_sarcoma --label 1 --work /tmp/clicks \\
        --json docs/results/cpu_clicks_workflow_sarcoma.json
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _harness import environment
from clicks_collection import make_collection

from extremefast.jsonio import read_json, write_json
from extremefast.metrics import format_summary


def _run(*args) -> float:
    """Run the command line; returns its wall time (s). Fails loudly on a non-zero exit."""
    t = time.perf_counter()
    exe = shutil.which("extremefast") or str(Path(sys.executable).parent / "extremefast")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"extremefast {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - t


def _validation_folder(work: Path, scans: Path, names: list[str]) -> Path:
    folder = work / "validation_scans"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in scans.iterdir():
        if any(p.name.startswith(n + ".") for n in names):
            (folder / p.name).symlink_to(p.resolve())
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--label", type=int, required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--noise-mm", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work
    scans, clicks = work / "scans", work / "clicks"
    for folder in (scans, clicks):
        shutil.rmtree(folder, ignore_errors=True)
    make_collection(args.data, args.label, scans, clicks, args.noise_mm)

    times = {"train --points": _run("train", "--data", scans, "--points", clicks, "--out", work / "points")}
    times["train (masks)"] = _run("train", "--data", args.data, "--label", args.label, "--out", work / "masks")
    points_run, masks_run = read_json(work / "points" / "summary.json"), read_json(work / "masks" / "summary.json")
    assert points_run["val_cases"] == masks_run["val_cases"], "the two runs must validate on the same cases"
    val = _validation_folder(work, scans, points_run["val_cases"])

    scores = {}
    for name, run in (("model, clicks only", "points"), ("model, trained with masks", "masks")):
        pred = work / f"pred_{run}"
        shutil.rmtree(pred, ignore_errors=True)
        _run("predict", "--checkpoint", work / run / "model.pt", "--image", val, "--points", clicks, "--out", pred)
        _run("evaluate", "--pred", pred, "--data", args.data, "--label", args.label)
        scores[name] = read_json(pred / "evaluation.json")
    rw = work / "rw_validation"
    shutil.rmtree(rw, ignore_errors=True)
    _run("pseudo-label", "--data", val, "--points", clicks, "--out", rw, "--workers", "1")
    rw_masks = work / "rw_validation_masks"
    shutil.rmtree(rw_masks, ignore_errors=True)
    rw_masks.mkdir()
    import numpy as np

    from extremefast.imageio import load_image, save_image

    for n in points_run["val_cases"]:  # probabilities -> 0/1 masks for evaluate
        vol = load_image(rw / f"{n}.nii.gz", dtype=None)
        save_image(rw_masks / f"{n}.nii.gz", (vol.array >= 0.5).astype(np.uint8), vol.affine)
    _run("evaluate", "--pred", rw_masks, "--data", args.data, "--label", args.label)
    scores["random walker (pseudo labels)"] = read_json(rw_masks / "evaluation.json")

    print(f"{args.data}: {len(points_run['train_cases'])} training, {len(points_run['val_cases'])} validation cases; "
          f"clicks = extreme points + {args.noise_mm} mm noise, as Slicer markups")
    for k, v in times.items():
        print(f"  {k:<28} {v / 60:6.1f} min")
    print(f"  clicks-only run kept round {points_run['best_round']} (pseudo labels settled); the mask run picked "
          f"round {masks_run['best_round']} and would have settled at round {masks_run['settle_round']}")
    print("  validation Dice, mean±std (median), from the annotator's clicks:")
    for k, v in scores.items():
        print(f"    {k:<32} {format_summary(v['dice'])}")
    gap = scores["model, trained with masks"]["dice"]["mean"] - scores["model, clicks only"]["dice"]["mean"]
    gain = scores["model, clicks only"]["dice"]["mean"] - scores["random walker (pseudo labels)"]["dice"]["mean"]
    print(f"  clicks-only model: {gain:+.3f} over the random walker, {gap:.3f} below the mask-trained model")
    if args.json:
        write_json(args.json, {"environment": environment(), "data": str(args.data), "noise_mm": args.noise_mm,
                               "minutes": {k: v / 60 for k, v in times.items()},
                               "kept_round": {"clicks only": points_run["best_round"],
                                              "masks": masks_run["best_round"],
                                              "masks run, settle rule": masks_run["settle_round"]},
                               "rounds_masks_run": masks_run["rounds"],
                               "validation_cases": points_run["val_cases"],
                               "dice": {k: v["dice"] for k, v in scores.items()},
                               "per_case": {k: v["cases"] for k, v in scores.items()}})


if __name__ == "__main__":
    main()
