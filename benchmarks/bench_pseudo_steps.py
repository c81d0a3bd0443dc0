"""Warm ``pseudo_label_from_points`` on shared real scans, step by step.

The steps are timed where the pipeline calls them (the functions are wrapped by name in the
modules that call them, so the code timed is the code that runs): the crop, the gradient
cost, the geodesic paths, the seeds, the random walker and, inside the walker, its system
assembly, its coarse space and its CG solves. "other" is the rest of the total (intensity
rules, smoothing, seed clean-up). Each case's answer is checked before its times are taken
(Dice against its mask above 0.5, printed) and every timed run must give that answer bit for
bit; the fastest of ``--repeat`` runs is reported.
"""
from __future__ import annotations

import importlib
import time
from collections import defaultdict

import numpy as np
from _harness import parser, report

import _real_problems as rp

# (folder, case, label): the liver of the abdominal CT, two sarcomas, a head-and-neck organ
CASES = (("ct_abdomen", "ts_ct_contrast_001", 5), ("ct_sarcoma", "STS_004", 1), ("ct_sarcoma", "STS_007", 1),
         ("ct_headneck", "pt_2", 7))
# step name -> (module, function name) for every place that may call it
STEPS = {
    "crop": (("extremefast.pseudo.pseudo_label", "prepare_crop"),),
    "gradient cost": (("extremefast.pseudo.pseudo_label", "gradient_cost"),),
    "geodesic paths": (("extremefast.pseudo.pseudo_label", "geodesic_scribbles"),
                       ("extremefast.pseudo.pseudo_label", "geodesic_scribble_sets")),
    "seeds": (("extremefast.pseudo.pseudo_label", "scribble_seeds"),),
    "random walker": (("extremefast.pseudo.pseudo_label", "random_walker"),),
    "walker: assembly": (("extremefast.random_walk.segmentation", "_assemble"),),
    "walker: coarse space": (("extremefast.random_walk.segmentation", "_coarse_space"),),
    "walker: CG": (("extremefast.random_walk.segmentation", "conjugate_gradient"),),
}
TOP = ("crop", "gradient cost", "geodesic paths", "seeds", "random walker")


class StepTimer:
    """Wraps the functions of STEPS by name while it is entered; ``seconds`` sums each step."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._saved = []

    def __enter__(self):
        for step, places in STEPS.items():
            for module_name, name in places:
                module = importlib.import_module(module_name)
                real = getattr(module, name, None)
                if real is None:
                    continue
                self._saved.append((module, name, real))
                setattr(module, name, self._timed(step, real))
        return self

    def _timed(self, step, real):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - t
        return timed

    def __exit__(self, *exc):
        for module, name, real in reversed(self._saved):
            setattr(module, name, real)


def main():
    p = parser(__doc__)
    p.add_argument("--only", default="", help="comma-separated substrings of case names")
    args = p.parse_args()
    import warnings

    from extremefast.data import open_msd
    from extremefast.metrics import dice
    from extremefast.pseudo import extreme_points, get_preset
    from extremefast.pseudo.pseudo_label import pseudo_label_from_points

    warnings.simplefilter("ignore")
    rows = []
    for folder, case, label in CASES:
        if args.only and not any(s in f"{folder} {case}" for s in args.only.split(",")):
            continue
        ds = open_msd(rp.SHARED / folder)
        image, labels = ds.load_case(next(c for c in ds.cases if c.name == case))
        mask = labels.array == label
        cfg = get_preset("default", window=(-160.0, 240.0) if ds.modality.upper() == "CT" else None)
        points = extreme_points(mask)
        first = pseudo_label_from_points(image.array, image.spacing, points, cfg)
        quality = dice(first.in_image_space() >= 0.5, mask)
        if not quality > 0.5:
            raise SystemExit(f"{folder}/{case}: pseudo label Dice {quality:.3f}: not a pseudo label of the organ")
        best, steps = np.inf, None
        for _ in range(max(1, args.repeat)):
            with StepTimer() as timer:
                t = time.perf_counter()
                again = pseudo_label_from_points(image.array, image.spacing, points, cfg)
                total = time.perf_counter() - t
            if not np.array_equal(again.probability, first.probability):
                raise SystemExit(f"{folder}/{case}: a timed run's probability differs from the checked one")
            if total < best:
                best, steps = total, dict(timer.seconds)
        row = {"case": f"{folder}/{case} {ds.organ_name(label)}", "Dice": quality, "total s": best}
        row.update({f"{s} s": steps.get(s, 0.0) for s in STEPS})
        row["other s"] = best - sum(steps.get(s, 0.0) for s in TOP)
        rows.append(row)
        print(f"{row['case']}: {best:.3f} s (Dice {quality:.3f}) "
              + ", ".join(f"{s} {steps.get(s, 0.0):.3f}" for s in STEPS), flush=True)
    report("warm pseudo_label_from_points per step (default preset, 128^3 crop)", rows, args)


if __name__ == "__main__":
    main()
