"""The refresh's seed rule on a trained model: the training cases' next pseudo labels against their masks.

Loads a run's ``model.pt``, predicts its training cases (the ones the run trained on: same split,
``max_cases`` as the run had) and refreshes each prediction with the random walker on its
uncertainty band, once per ``--ridge`` value (``none``: erosion alone, as the paper; a number:
``TrainConfig.rw_ridge_seeds``). Prints the mean Dice of the network's prediction and of each
refreshed label against the real masks.

    python benchmarks/refresh_seed_tries.py --data ../shared/data/ct_headneck --organ mandible \\
        --model RUN/a/model.pt --ridge none,0.5,0.8,0.9
"""
from __future__ import annotations

import argparse
import time

from training_tries import saved_model

import numpy as np

from extremefast.metrics import dice
from extremefast.pseudo.refine import refine_probabilities


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--label", type=int)
    ap.add_argument("--organ")
    ap.add_argument("--model", required=True, help="model.pt of a training run")
    ap.add_argument("--ridge", default="none,0.8", help="comma-separated: none or a probability")
    args = ap.parse_args()
    config, cases, trainer = saved_model(args.data, args.label, args.organ, args.model, split="training")
    items = [(trainer.predict_image(c), c.image, c.points, c.spacing) for c in cases]
    print(f"{len(cases)} training cases; network {np.mean([dice(i[0], c.mask) for i, c in zip(items, cases)]):.4f}")
    for ridge in args.ridge.split(","):
        above = None if ridge == "none" else float(ridge)
        t = time.perf_counter()
        out = refine_probabilities(items, device="cpu", **{**config.refine_settings, "ridge_above": above})
        scores = [dice(o, c.mask) for o, c in zip(out, cases)]
        print(f"ridge {ridge}: refreshed {np.mean(scores):.4f} (min {np.min(scores):.3f}; {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
