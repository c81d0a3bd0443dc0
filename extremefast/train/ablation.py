"""The paper's Table 1 for a set of variants: one training run each, same data and budget."""
from __future__ import annotations

from pathlib import Path

from ..data import open_dataset
from ..errors import InputError
from ..jsonio import write_json
from ..metrics import format_summary
from ..model import VARIANT_NAMES, VARIANTS
from ..nifti import ensure_output_folder
from .run import train


def run_ablation(variants, out, make_config, *, data, label, organ, data_root=None, device="auto", log=print,
                 points=None, resume: bool = True) -> str:
    """One run per variant in ``out/<variant>`` (resumed where a run is there, with ``resume``)
    and the table of their Dice as ``table.md`` and ``table.json``."""
    for v in variants:
        if v not in VARIANTS:
            raise InputError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if "full" in variants and points is not None:
        unlabelled = [c.name for c in open_dataset(data, data_root=data_root).cases if c.label_path is None]
        if unlabelled:
            raise InputError(f"variant full trains on masks, and {len(unlabelled)} case(s) have none "
                             f"({', '.join(unlabelled[:3])}); leave full out of the variants")
    out = ensure_output_folder(out)
    rows = []
    rw_init = None
    for v in variants:
        log(f"variant {v}: {VARIANT_NAMES[v]}")
        summary = train(data, label, organ, Path(out) / v, make_config(v), data_root=data_root, device=device,
                        resume=resume, log=log, points=points)
        if rw_init is None:
            rw_init = summary["rounds"][0]["val_dice"]
        rows.append({"variant": v, "name": VARIANT_NAMES[v], "val_dice": summary["final_val_dice"],
                     "val_dice_with_walker": summary.get("final_val_dice_with_walker"),
                     "best_round": summary["best_round"]})
    table = {"data": data, "random_walker_init": rw_init, "variants": rows}
    write_json(Path(out) / "table.json", table)
    # the last column: the kept model averaged with the walker (``predict --with-walker``)
    lines = ["| method | Dice mean±std (median) | best round | with the walker at prediction |", "|---|---|---|---|",
             f"| rnd. walk. init. | {format_summary(rw_init)} | 0 | |"]
    lines += [f"| {r['name']} | {format_summary(r['val_dice'])} | {r['best_round']} | "
              f"{format_summary(r['val_dice_with_walker']) if r['val_dice_with_walker'] else '–'} |" for r in rows]
    md = "\n".join(lines) + "\n"
    (Path(out) / "table.md").write_text(md)
    return md
