"""Score predicted masks against a data set's real masks: Dice, HD95, volume difference."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..metrics import dice, format_summary, hausdorff95, summarise, volume_difference

METRICS = ("dice", "hd95_mm", "volume_diff_ml", "volume_diff_percent")


def evaluate(pred_dir, dataset, label: int) -> dict:
    """Per-case and summarised metrics of ``pred_dir/<case>.<format>`` against ``dataset``.

    Cases of the data set with a prediction file (any format of :mod:`extremefast.imageio`)
    are scored; the prediction must lie on the label map's grid in world space (its voxel
    order may differ); a prediction whose case is unknown is an error, so a
    misnamed folder is not silently scored as empty. HD95 is NaN (and left out of its
    summary) where a mask is empty.

    Parameters
    ----------
    pred_dir : path
        Folder of predicted masks named after their cases.
    dataset : Dataset
        The data set whose masks are the truth.
    label : int
        The organ's label value in its masks.

    Returns
    -------
    dict
        ``cases`` (one row of metrics per case) and a mean/std/median summary per metric.
    """
    from ..imageio import image_stem, list_images, load_image

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    files = {image_stem(p): p for p in list_images(pred_dir)}
    if not files:
        raise DataError(f"{pred_dir}: no predictions (.nii.gz, .nrrd, .seg.nrrd, .mha)")
    known = {c.name: c for c in dataset.cases}
    unknown = sorted(set(files) - set(known))
    if unknown:
        raise DataError(f"{pred_dir}: predictions for cases not in the data set: {', '.join(unknown[:5])}")
    rows = []
    for name, path in files.items():
        _, labels = dataset.load_case(known[name])
        pred = load_image(path, dtype=None, oriented=True)
        if pred.shape != labels.shape:
            raise DataError(f"{path}: shape {pred.shape} differs from the label map's {labels.shape}")
        if not np.allclose(pred.affine, labels.affine, atol=1e-3):
            raise DataError(f"{path}: affine differs from the label map's (not on the same grid)")
        truth = labels.array == label
        p = pred.array
        p = p >= 0.5 if p.dtype.kind == "f" else p > 0
        spacing = labels.spacing
        dv, dv_pct = volume_difference(p, truth, spacing)
        rows.append({"case": name, "dice": dice(p, truth), "hd95_mm": hausdorff95(p, truth, spacing),
                     "volume_diff_ml": dv, "volume_diff_percent": dv_pct})
    summary = {m: summarise([r[m] for r in rows if np.isfinite(r[m])]) for m in METRICS}
    return {"label": int(label), "cases": rows, **summary}


def format_table(result: dict) -> str:
    lines = ["| case | Dice | HD95 (mm) | volume diff (ml) | volume diff (%) |", "|---|---|---|---|---|"]
    for r in result["cases"]:
        lines.append(f"| {r['case']} | {r['dice']:.3f} | {r['hd95_mm']:.1f} | {r['volume_diff_ml']:.1f} | "
                     f"{r['volume_diff_percent']:.1f} |")
    lines.append(f"| mean±std (median) | {format_summary(result['dice'])} | {_fmt(result['hd95_mm'])} | "
                 f"{_fmt(result['volume_diff_ml'])} | {_fmt(result['volume_diff_percent'])} |")
    return "\n".join(lines)


def _fmt(s: dict) -> str:
    return f"{s['mean']:.1f}±{s['std']:.1f} ({s['median']:.1f})"

