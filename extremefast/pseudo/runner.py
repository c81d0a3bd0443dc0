"""``extremefast pseudo-label``: pseudo labels for every case of a data set, resumable.

Each finished case leaves ``<case>.nii.gz`` (probabilities in the original image space),
``<case>.png`` (overlay) and, last, ``<case>.json``; a case whose JSON exists is not
redone, so a rerun after a crash picks up where it stopped. Cases run in parallel
processes.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ExtremefastError
from ..jsonio import read_json, write_json
from ..metrics import dice, format_summary, summarise
from ..nifti import ensure_output_folder
from ..threads import choose_threads, cpu_count
from .clicks import case_clicks, case_problems, simulate_clicks
from .pseudo_label import PseudoLabelConfig, normalise_intensity, pseudo_label_from_points, window_for_modality


def case_pseudo_label(dataset_root, case_name: str, label: int | None, config: PseudoLabelConfig, out_dir,
                      click_noise_mm: float = 0.0, seed: int = 0, overlay: bool = True,
                      points_file=None) -> tuple[dict, dict | None]:
    """One case: its clicks (from ``points_file``, else from its mask), the pseudo label,
    files written; returns the record and the case's contact-sheet tile."""
    from ..data.dataset import open_msd
    from ..imageio import in_file_grid, save_image
    from ..viz import contact_tile

    t0 = time.perf_counter()
    ds = open_msd(dataset_root)
    case = ds.case(case_name)
    image = ds.load_image(case)
    clicks = case_clicks(ds, case, image, label, points_file)
    if clicks is None:
        where = case.label_path if case.label_path is not None else "its data set (no mask)"
        return {"case": case_name, "skipped": f"label {label} has no voxel in {where}"}, None
    points, mask, clicks_from = clicks
    reason, notes = case_problems(points, image.shape, image.spacing, mask)
    if reason is not None:
        return {"case": case_name, "skipped": reason}, None
    if clicks_from == "mask" and click_noise_mm > 0:
        points = simulate_clicks(points, mask, image.spacing, click_noise_mm,
                                 rng=np.random.default_rng([seed, _stable_hash(case_name)]))
    config = config.with_(window=window_for_modality(config.window, ds.modality))
    t1 = time.perf_counter()
    pl = pseudo_label_from_points(image.array, image.spacing, points, config)
    t2 = time.perf_counter()
    prob = pl.in_image_space()
    out_dir = Path(out_dir)
    save_image(out_dir / f"{case_name}.nii.gz", *in_file_grid(image, prob), dtype=np.float32)
    t3 = time.perf_counter()
    record = {
        "case": case_name,
        "clicks_from": clicks_from,
        "dice": dice(prob, mask) if mask is not None else None,
        "points": points.tolist(),
        "box": pl.box.as_array().tolist(),
        "seconds": {"load": t1 - t0, "pseudo_label": t2 - t1, "paste_and_write": t3 - t2},
        "notes": notes,
    }
    score = f"Dice {record['dice']:.3f}" if mask is not None else "no mask"
    if overlay:
        from ..pseudo.roi import crop_resample
        from ..viz import save_overlay

        truth = crop_resample(mask.astype(np.float32), pl.box, order=1) >= 0.5 if mask is not None else None
        save_overlay(out_dir / f"{case_name}.png", pl.image, pl.probability, points=pl.points,
                     scribble=pl.scribble, truth=truth, title=f"{case_name}: {score} ({config.preset} preset)")
    write_json(out_dir / f"{case_name}.json", record)
    tile = contact_tile(normalise_intensity(image.array, config.window), prob, points, f"{case_name}: {score}")
    return record, tile


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _worker_init(threads: int):
    try:
        import numba

        numba.set_num_threads(threads)
    except Exception:
        pass


def run_pseudo_labels(dataset, label: int | None, out_dir, config: PseudoLabelConfig, *, workers: int | None = None,
                      click_noise_mm: float = 0.0, seed: int = 0, cases=None, progress=None,
                      points: dict | None = None, without_points=(), resume: bool = True) -> dict:
    """Pseudo labels for ``cases`` (default: all) of ``dataset``; returns the summary.

    With ``resume`` the cases finished in ``out_dir`` by an earlier run are kept (their record
    is written last, so a finished case is a whole one); without, every case is made again.

    With ``points`` ({case name: points file}) the clicks are the annotator's and only those
    cases run (``without_points`` names the others, for the summary); the masks, where there
    are any, give the Dice column only. Writes ``summary.json`` and ``contact_sheet.png``.
    """
    out_dir = ensure_output_folder(out_dir)
    cases = list(cases if cases is not None else dataset.cases)
    if points is not None:
        cases = [c for c in cases if c.name in points]
    records = _finished_records(out_dir, cases) if resume else {}
    todo = [c.name for c in cases if c.name not in records]
    tiles: dict[str, dict] = {}
    if progress is not None:
        progress(len(records), len(cases))

    def job(name):
        return (str(dataset.root), name, label, config, out_dir, click_noise_mm, seed, True, (points or {}).get(name))

    def finished(name, result):
        records[name], tile = result
        if tile is not None:
            tiles[name] = tile
        if progress is not None:
            progress(len(records), len(cases))

    _run_cases(todo, job, finished, workers)
    ordered = [records[c.name] for c in cases]
    summary = _summary(dataset, label, config, ordered, points, without_points)
    write_json(out_dir / "summary.json", summary)
    made = [r for r in ordered if "skipped" not in r]
    if made:
        _contact_sheet(dataset, out_dir, made, tiles, config)
    return summary


def _finished_records(out_dir: Path, cases) -> dict[str, dict]:
    """The records of the cases an earlier run finished in ``out_dir`` (a broken record is redone)."""
    records = {}
    for c in cases:
        done = out_dir / f"{c.name}.json"
        if done.exists() and (out_dir / f"{c.name}.nii.gz").exists():
            try:
                records[c.name] = read_json(done)
            except ExtremefastError:
                pass
    return records


def _run_cases(todo: list[str], job, finished, workers: int | None) -> None:
    """``case_pseudo_label(*job(name))`` for every name, in this process or in a pool of ``workers``
    processes that share the cores; ``finished(name, result)`` as each one ends."""
    workers = max(1, min(workers or choose_threads()[0], len(todo) or 1))
    if workers == 1:
        for name in todo:
            finished(name, case_pseudo_label(*job(name)))
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(max(1, cpu_count() // workers),)) as pool:
        futures = {pool.submit(case_pseudo_label, *job(name)): name for name in todo}
        for fut in as_completed(futures):
            finished(futures[fut], fut.result())


def _summary(dataset, label, config: PseudoLabelConfig, ordered: list[dict], points, without_points) -> dict:
    """``summary.json``: where the clicks came from, the settings, every case and the Dice over them."""
    scored = [r for r in ordered if r.get("dice") is not None]
    made = [r for r in ordered if "skipped" not in r]
    return {
        "dataset": str(dataset.root),
        "label": None if label is None else int(label),
        "organ": dataset.organ_name(label) if label is not None else None,
        "clicks_from": "points files" if points is not None else "masks (extreme points)",
        "cases_without_points": list(without_points),
        "dice_rests_on": f"the masks of {len(scored)} of {len(made)} cases" if scored else "no mask",
        "config": asdict(config),
        "cases": ordered,
        "dice": summarise(r["dice"] for r in scored),
        "seconds_per_case": summarise(r["seconds"]["pseudo_label"] for r in made),
    }


def _contact_sheet(dataset, out_dir: Path, made: list[dict], tiles: dict, config: PseudoLabelConfig):
    """``contact_sheet.png``: every case's pseudo label on the slice through its clicks (cases
    resumed from an earlier run are read back from their files)."""
    from ..imageio import load_image
    from ..viz import contact_tile, save_contact_sheet

    window = window_for_modality(config.window, dataset.modality)
    ordered = []
    for r in made:
        if r["case"] not in tiles:
            image = dataset.load_image(dataset.case(r["case"]))
            prob = load_image(out_dir / f"{r['case']}.nii.gz", oriented=True).array
            score = f"Dice {r['dice']:.3f}" if r.get("dice") is not None else "no mask"
            tiles[r["case"]] = contact_tile(normalise_intensity(image.array, window), prob, np.asarray(r["points"]),
                                            f"{r['case']}: {score}")
        ordered.append(tiles[r["case"]])
    save_contact_sheet(out_dir / "contact_sheet.png", ordered, title=f"pseudo labels ({config.preset} preset)")


def summary_table(summary: dict):
    from rich.table import Table

    organ = f"{summary['organ']} (label {summary['label']})" if summary["label"] is not None else "clicks only"
    table = Table(title=f"pseudo labels: {organ}")
    table.add_column("case")
    table.add_column("Dice", justify="right")
    table.add_column("seconds", justify="right")
    for r in summary["cases"]:
        if "skipped" not in r:
            score = f"{r['dice']:.3f}" if r.get("dice") is not None else "no mask"
            table.add_row(r["case"], score, f"{r['seconds']['pseudo_label']:.2f}")
        else:
            table.add_row(r["case"], "skipped", r.get("skipped", ""))
    if summary["dice"]["n"]:
        table.add_row("mean±std (median)", format_summary(summary["dice"]), "")
    return table
