"""``extremefast pseudo-label``: pseudo labels for every case of a data set, resumable.

Each finished case leaves ``<case>.nii.gz`` (probabilities in the original image space),
``<case>.png`` (overlay) and, last, ``<case>.json``; a case whose JSON exists is not
redone, so a rerun after a crash picks up where it stopped. Cases run in parallel
processes.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ExtremefastError
from ..jsonio import read_json, write_json
from ..metrics import dice, format_summary, summarise
from ..nifti import ensure_output_folder
from .extreme_points import extreme_points, simulate_clicks
from .pseudo_label import PseudoLabelConfig, pseudo_label_from_points


def case_pseudo_label(dataset_root, case_name: str, label: int, config: PseudoLabelConfig, out_dir,
                      click_noise_mm: float = 0.0, seed: int = 0, overlay: bool = True) -> dict:
    """One case: clicks from its mask, the pseudo label, files written, the record returned."""
    from ..data.dataset import open_msd
    from ..nifti import save_nifti

    t0 = time.perf_counter()
    ds = open_msd(dataset_root)
    case = ds.case(case_name)
    image, labels = ds.load_case(case)
    mask = labels.array == label
    if not mask.any():
        return {"case": case_name, "skipped": f"label {label} has no voxel in {case.label_path}"}
    points = extreme_points(mask)
    if click_noise_mm > 0:
        points = simulate_clicks(points, mask, image.spacing, click_noise_mm,
                                 rng=np.random.default_rng([seed, _stable_hash(case_name)]))
    config = _config_for_modality(config, ds.modality)
    t1 = time.perf_counter()
    pl = pseudo_label_from_points(image.array, image.spacing, points, config)
    t2 = time.perf_counter()
    prob = pl.in_image_space()
    out_dir = Path(out_dir)
    save_nifti(out_dir / f"{case_name}.nii.gz", prob, image.affine, dtype=np.float32)
    t3 = time.perf_counter()
    record = {
        "case": case_name,
        "dice": dice(prob, mask),
        "points": points.tolist(),
        "box": pl.box.as_array().tolist(),
        "seconds": {"load": t1 - t0, "pseudo_label": t2 - t1, "paste_and_write": t3 - t2},
    }
    if overlay:
        from ..pseudo.roi import crop_resample
        from ..viz import save_overlay

        truth = crop_resample(mask.astype(np.float32), pl.box, order=1) >= 0.5
        save_overlay(out_dir / f"{case_name}.png", pl.image, pl.probability, points=pl.points,
                     scribble=pl.scribble, truth=truth,
                     title=f"{case_name}: Dice {record['dice']:.3f} ({config.preset} preset)")
    write_json(out_dir / f"{case_name}.json", record)
    return record


def _config_for_modality(config: PseudoLabelConfig, modality: str) -> PseudoLabelConfig:
    # Hounsfield windows mean nothing outside CT: scale other modalities by percentiles.
    if config.window is not None and modality.upper() != "CT":
        return config.with_(window=None)
    return config


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _worker_init(threads: int):
    try:
        import numba

        numba.set_num_threads(threads)
    except Exception:
        pass


def run_pseudo_labels(dataset, label: int, out_dir, config: PseudoLabelConfig, *, workers: int | None = None,
                      click_noise_mm: float = 0.0, seed: int = 0, cases=None, progress=None) -> dict:
    """Pseudo labels for ``cases`` (default: all) of ``dataset``; returns the summary."""
    out_dir = ensure_output_folder(out_dir)
    cases = list(cases if cases is not None else dataset.cases)
    records: dict[str, dict] = {}
    todo = []
    for c in cases:
        done = out_dir / f"{c.name}.json"
        if done.exists() and (out_dir / f"{c.name}.nii.gz").exists():
            try:
                records[c.name] = read_json(done)
                continue
            except ExtremefastError:
                pass  # a broken record is redone
        todo.append(c.name)
    if progress is not None:
        progress(len(records), len(cases))
    workers = max(1, min(workers or (os.cpu_count() or 1), len(todo) or 1))
    args = (str(dataset.root),)
    if workers == 1:
        for name in todo:
            records[name] = case_pseudo_label(*args, name, label, config, out_dir, click_noise_mm, seed)
            if progress is not None:
                progress(len(records), len(cases))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(max(1, (os.cpu_count() or 1) // workers),)) as pool:
            futures = {pool.submit(case_pseudo_label, *args, name, label, config, out_dir, click_noise_mm, seed): name
                       for name in todo}
            for fut in as_completed(futures):
                records[futures[fut]] = fut.result()
                if progress is not None:
                    progress(len(records), len(cases))
    ordered = [records[c.name] for c in cases]
    scored = [r for r in ordered if "dice" in r]
    summary = {
        "dataset": str(dataset.root),
        "label": int(label),
        "organ": dataset.organ_name(label),
        "config": asdict(config),
        "cases": ordered,
        "dice": summarise(r["dice"] for r in scored),
        "seconds_per_case": summarise(r["seconds"]["pseudo_label"] for r in scored),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def summary_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"pseudo labels: {summary['organ']} (label {summary['label']})")
    table.add_column("case")
    table.add_column("Dice", justify="right")
    table.add_column("seconds", justify="right")
    for r in summary["cases"]:
        if "dice" in r:
            table.add_row(r["case"], f"{r['dice']:.3f}", f"{r['seconds']['pseudo_label']:.2f}")
        else:
            table.add_row(r["case"], "skipped", r.get("skipped", ""))
    if summary["dice"]["n"]:
        table.add_row("mean±std (median)", format_summary(summary["dice"]), "")
    return table
