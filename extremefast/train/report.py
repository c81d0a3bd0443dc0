"""What a training run reports: its summary, the line per round, the figures (paper fig. 4 and 6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..metrics import dice, summarise
from ..model import TrainConfig
from ..pseudo.roi import crop_resample, paste_back
from .cases import CaseData
from .stopping import settle_round


def run_summary(config: TrainConfig, rows: list[dict], best_round: int, train_cases: list[CaseData],
                val_cases: list[CaseData]) -> dict:
    """``summary.json`` of a run: its rows, the round kept and by which rule, what the Dice rests on."""
    best = next(r for r in rows if r["round"] == best_round)
    cases = train_cases + val_cases
    return {"variant": config.variant, "config": config.to_dict(), "rounds": rows,
            "best_round": best_round, "final_val_dice": best["val_dice"],
            "final_val_dice_with_walker": best.get("val_dice_with_walker"),
            "selection": config.selection,
            "settle_round": settle_round(rows, config.settle_change),
            "clicks_from": sorted({"mask" if c.clicks_from == "mask" else "points files" for c in cases}),
            "dice_rests_on": {"validation cases with a mask": sum(c.mask is not None for c in val_cases),
                              "training cases with a mask": sum(c.mask is not None for c in train_cases)},
            "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]}


def save_figures(out: Path, rows: list[dict], variant: str, val_cases: list[CaseData], predict_crop, cache):
    """``dice_per_round.png`` (paper fig. 6) and overlays of the first validation cases (fig. 4).

    ``predict_crop(case)`` gives the model's probability, box and image crop; ``cache`` holds
    the round-0 pseudo labels drawn beside the prediction.
    """
    from ..viz import save_curves, save_overlay

    rounds = [r["round"] for r in rows]
    curves = {"validation Dice (real masks)": [r["val_dice"]["mean"] for r in rows],
              "pseudo-label Dice (training)": [r["pseudo_label_dice"]["mean"] for r in rows]}
    if any("val_dice_with_walker" in r for r in rows):  # round 0 is the walker alone: no point there
        curves["validation, with the walker"] = [r["val_dice_with_walker"]["mean"] if "val_dice_with_walker" in r
                                                 else float("nan") for r in rows]
    save_curves(out / "dice_per_round.png", rounds, curves, title=f"variant {variant}")
    for case in val_cases[:3]:
        p, box, image = predict_crop(case)
        truth = None if case.mask is None else crop_resample(case.mask.astype(np.float32), box, order=1) >= 0.5
        score = "no mask" if case.mask is None else f"Dice {dice(paste_back(p, box), case.mask):.3f}"
        rw0 = cache.get(f"r0_{case.name}")
        extra = {}
        if rw0 is not None:
            extra["random walker (round 0)"] = crop_resample(rw0[0]["pseudo"], box, order=1)
        save_overlay(out / "overlays" / f"{case.name}.png", image, p, label="prediction",
                     points=box.to_crop(case.points),
                     truth=truth, extra=extra, title=f"{case.name}: variant {variant}, {score}")


def mask_dice(cases: list[CaseData], use_masks: bool = False) -> dict:
    """Dice of the cases' pseudo labels (or, with ``use_masks``, of the masks themselves, the
    target of full supervision) against their masks, over the cases that have one."""
    return summarise(dice(c.mask.astype(np.float32) if use_masks else c.pseudo, c.mask)
                     for c in cases if c.mask is not None)


def row_line(row: dict) -> str:
    """The line printed after each round."""
    def score(s):
        return f"{s['mean']:.3f}" if s["n"] else "(no masks)"

    change = f", label change {row['label_change']:.3f}" if "label_change" in row else ""
    walker = f" (with the walker {score(row['val_dice_with_walker'])})" if "val_dice_with_walker" in row else ""
    return (f"round {row['round']:>2}: pseudo-label Dice {score(row['pseudo_label_dice'])}, "
            f"validation Dice {score(row['val_dice'])}{walker}{change} ({row['seconds']:.1f} s)")
