"""The annotator's workflow on a real collection, end to end, against the run that had the masks.

1. The collection as an annotator has it: scans without masks, six clicks per scan as 3D Slicer
   markups (the masks' extreme points moved by 2 mm noise; ``clicks_collection.py``).
2. ``extremefast train --data SCANS --points CLICKS --out W/points`` -- no other option, timed.
3. ``extremefast train --data DATA --out W/masks`` -- the same data with its masks (clicks
   simulated from them, as the paper evaluates), same sizes.
4. Both models ``predict`` the validation cases (never trained on) from the annotator's clicks
   (the clicks-only model also with ``--with-walker``);
   ``pseudo-label --points`` gives the random walker's labels of the same cases from the same
   clicks; every mask is scored with ``evaluate`` against the real masks.
5. The clicks-only model predicts NRRD copies of the validation scans and a DICOM-series copy of
   one of them; the masks must be the same voxels in world space as from the NIfTI scans.

    python benchmarks/clicks_workflow.py --data ../shared/data/ct_sarcoma --label 1 --work /tmp/clicks \\
        --json docs/results/clicks_workflow_sarcoma.json
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _harness import environment, provenance
from clicks_collection import make_collection

import numpy as np

from extremefast.imageio import image_stem, list_images, load_image, save_image, write_dicom_series
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


def _subset(folder: Path, source: Path, names: list[str]) -> Path:
    """``folder`` holding links to the files of ``source`` that belong to the cases ``names``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in source.iterdir():
        if image_stem(p) in names or p.name.split(".")[0] in names:
            (folder / p.name).symlink_to(p.resolve())
    return folder


def _world_mask(path: Path) -> np.ndarray:
    """The mask on the LPS-ordered grid, the same for every file format of the same scan."""
    return load_image(path, dtype=np.uint8, oriented=True).array


def _same_in_other_formats(work: Path, val: Path, clicks: Path, model: Path, reference: Path) -> dict:
    """Predict NRRD copies of every validation scan and a DICOM copy of the first; compare masks."""
    nrrd, dicom = work / "validation_nrrd", work / "validation_dicom"
    for folder in (nrrd, dicom):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    scans = sorted(val.iterdir())
    for p in scans:
        vol = load_image(p, dtype=None)
        save_image(nrrd / f"{image_stem(p)}.nrrd", vol.array, vol.affine)
    first = load_image(scans[0], dtype=None)
    write_dicom_series(dicom / image_stem(scans[0]), first.array, first.affine)
    first_clicks = _subset(work / "validation_clicks_dicom", clicks, [image_stem(scans[0])])
    out = {}
    for label, image, points in (("NRRD", nrrd, clicks), ("DICOM series", dicom, first_clicks)):
        pred = work / f"pred_{label.split()[0].lower()}"
        shutil.rmtree(pred, ignore_errors=True)
        _run("predict", "--checkpoint", model, "--image", image, "--points", points, "--out", pred,
             "--format", "input")
        differing = {}
        for mask in list_images(pred):
            name = image_stem(mask)
            differing[name] = int((_world_mask(mask) != _world_mask(reference / f"{name}.nii.gz")).sum())
        out[label] = differing
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--label", type=int, required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--noise-mm", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the collection and both trained runs of an earlier run in --work (and its times)")
    args = parser.parse_args()
    work = args.work
    scans, clicks = work / "scans", work / "clicks"
    if args.reuse and (work / "times.json").exists():
        times = read_json(work / "times.json")
    else:
        for folder in (scans, clicks, work / "points", work / "masks"):
            shutil.rmtree(folder, ignore_errors=True)
        make_collection(args.data, args.label, scans, clicks, args.noise_mm)
        times = {"train --points": _run("train", "--data", scans, "--points", clicks, "--out", work / "points")}
        times["train (masks)"] = _run("train", "--data", args.data, "--label", args.label, "--out", work / "masks")
        write_json(work / "times.json", times)
    points_run, masks_run = read_json(work / "points" / "summary.json"), read_json(work / "masks" / "summary.json")
    assert points_run["val_cases"] == masks_run["val_cases"], "the two runs must validate on the same cases"
    val = _subset(work / "validation_scans", scans, points_run["val_cases"])
    val_clicks = _subset(work / "validation_clicks", clicks, points_run["val_cases"])

    scores = {}
    for name, run in (("model, clicks only", "points"), ("model, trained with masks", "masks")):
        pred = work / f"pred_{run}"
        shutil.rmtree(pred, ignore_errors=True)
        _run("predict", "--checkpoint", work / run / "model.pt", "--image", val, "--points", val_clicks, "--out", pred)
        _run("evaluate", "--pred", pred, "--data", args.data, "--label", args.label)
        scores[name] = read_json(pred / "evaluation.json")
    # the clicks-only model's predictions averaged with the walker's from the same clicks
    pred = work / "pred_points_with_walker"
    shutil.rmtree(pred, ignore_errors=True)
    _run("predict", "--checkpoint", work / "points" / "model.pt", "--image", val, "--points", val_clicks, "--out", pred,
         "--with-walker")
    _run("evaluate", "--pred", pred, "--data", args.data, "--label", args.label)
    scores["model, clicks only, with the walker"] = read_json(pred / "evaluation.json")
    rw = work / "rw_validation"
    shutil.rmtree(rw, ignore_errors=True)
    _run("pseudo-label", "--data", val, "--points", val_clicks, "--out", rw, "--workers", "1")
    rw_masks = work / "rw_validation_masks"
    shutil.rmtree(rw_masks, ignore_errors=True)
    rw_masks.mkdir()
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
    formats = _same_in_other_formats(work, val, val_clicks, work / "points" / "model.pt", work / "pred_points")
    for label, differing in formats.items():
        print(f"  {label} copies ({len(differing)} case(s)): voxels differing from the NIfTI masks in world space: "
              f"{sum(differing.values())}")
    gap = scores["model, trained with masks"]["dice"]["mean"] - scores["model, clicks only"]["dice"]["mean"]
    gain = scores["model, clicks only"]["dice"]["mean"] - scores["random walker (pseudo labels)"]["dice"]["mean"]
    print(f"  clicks-only model minus random walker: {gain:+.3f}; mask-trained model minus clicks-only model: {gap:+.3f}")
    if args.json:
        write_json(args.json, {"provenance": provenance(), "environment": environment(), "data": str(args.data), "noise_mm": args.noise_mm,
                               "minutes": {k: v / 60 for k, v in times.items()},
                               "kept_round": {"clicks only": points_run["best_round"],
                                              "masks": masks_run["best_round"],
                                              "masks run, settle rule": masks_run["settle_round"]},
                               "rounds_masks_run": masks_run["rounds"],
                               "validation_cases": points_run["val_cases"],
                               "dice": {k: v["dice"] for k, v in scores.items()},
                               "voxels_differing_other_formats": formats,
                               "per_case": {k: v["cases"] for k, v in scores.items()}})


if __name__ == "__main__":
    main()
