"""Training tries on a real collection: one variant with the CPU defaults and some settings changed.

Runs ``extremefast.train.run.train`` with :func:`cpu_defaults` and the ``--set`` overrides (any
:class:`TrainConfig` field), then scores the kept model's validation predictions three ways: as
they are, refined by the random walker on their uncertainty band (``predict --refine``), and
averaged with the walker's pseudo label from the same clicks (``predict --with-walker``), each
against the real masks, beside the walker alone. Prints one line per round and the four scores;
``--json`` saves them.

    python benchmarks/training_tries.py --data ../shared/data/ct_sarcoma --label 1 --variant full \\
        --set init_filters=16 --out /tmp/tries/full16
    python benchmarks/training_tries.py --data ../shared/data/ct_headneck --organ mandible --variant f \\
        --set max_cases=24 --out /tmp/tries/mandible_f

``--score-only`` scores the model an earlier run left in ``--out`` (no training).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _harness import environment
from pseudo_label_tries import parse_overrides

import numpy as np
import torch

from extremefast.data.dataset import open_dataset, train_val_split
from extremefast.jsonio import write_json
from extremefast.metrics import dice, format_summary, summarise
from extremefast.model import TrainConfig, load_checkpoint
from extremefast.model.config import cpu_defaults
from extremefast.pseudo import pseudo_label_from_points
from extremefast.pseudo.refine import average_with_walker, refine_probability
from extremefast.train.cases import load_cases
from extremefast.train.run import train
from extremefast.train.scheme import Runtime
from extremefast.train.trainer import Trainer


def saved_model(data: str, label, organ, model_path, split: str = "validation"):
    """A run's saved model on its own split: (config, cases, trainer holding the weights).

    ``split``: "validation" (its validation cases) or "training" (the ones it trained on,
    ``max_cases`` as the run had them).
    """
    ckpt = load_checkpoint(model_path)
    config = TrainConfig.from_dict(ckpt["config"])
    ds = open_dataset(data)
    value = ds.organ_label(label, organ, clicks_given=False)
    train_cases, val = train_val_split(ds, config.n_val, seed=config.seed, fold=config.fold)
    chosen = val if split == "validation" else train_cases[: config.max_cases]
    cases = load_cases(ds, chosen, value, config.window)
    for case in cases:  # the trainer's crops carry a target volume; none is needed here
        case.pseudo = np.zeros(case.image.shape, np.float32)
    trainer = Trainer(config, Runtime(torch.device("cpu")), cases, cases)
    trainer.network.load_state_dict(ckpt["model"])
    return config, cases, trainer


def score(data: str, label, organ, out: Path) -> dict:
    """Validation Dice of ``out/model.pt``: the network's prediction, the refined one, the one
    averaged with the walker, and the walker alone."""
    config, cases, trainer = saved_model(data, label, organ, out / "model.pt")
    scores = {"network": [], "refined": [], "with_walker": [], "walker": []}
    for case in cases:
        prob = trainer.predict_image(case)
        walker = pseudo_label_from_points(case.raw, case.spacing, case.points,
                                          config.pseudo_label_settings).in_image_space()
        found = {"network": prob, "walker": walker, "with_walker": average_with_walker(prob, walker),
                 "refined": refine_probability(prob, case.image, case.points, case.spacing, **config.refine_settings)}
        for key, p in found.items():
            scores[key].append(dice(p, case.mask))
    return {"cases": [c.name for c in cases], **{k: summarise(v) for k, v in scores.items()},
            **{f"{k}_per_case": v for k, v in scores.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--label", type=int)
    ap.add_argument("--organ")
    ap.add_argument("--variant", default="f")
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig fields, key=value (Python literals)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    result = {"environment": environment(), "data": args.data, "variant": args.variant, "settings": overrides}
    if not args.score_only:
        config = cpu_defaults(TrainConfig(variant=args.variant)).with_(**overrides)
        t0 = time.perf_counter()
        summary = train(args.data, args.label, args.organ, args.out, config, device="cpu")
        result.update(seconds=time.perf_counter() - t0, best_round=summary["best_round"], rounds=summary["rounds"])
    result["validation"] = score(args.data, args.label, args.organ, args.out)
    v = result["validation"]
    print(f"validation Dice: network {format_summary(v['network'])}, refined {format_summary(v['refined'])}, "
          f"with the walker {format_summary(v['with_walker'])}, walker alone {format_summary(v['walker'])}"
          + (f" ({result['seconds'] / 60:.1f} min)" if "seconds" in result else ""))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
