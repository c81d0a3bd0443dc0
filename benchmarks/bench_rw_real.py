"""Random walker on the real-problem battery (benchmarks/_real_problems.py) vs scikit-image's
default mode, in the same run.

Per problem: seconds, CG iterations (extremefast), largest error against a tight float64
reference, the share of unknown voxels whose label differs from the reference's, and
whether any probability left [-prob_tol, 1 + prob_tol]. Every answer is checked before
its time is taken; the battery's total time gives the ratio.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
from _harness import parser, report

import _real_problems as rp


def solve_timed(fn, repeat):
    out = fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main():
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--only", default="", help="comma-separated substrings of problem names to run")
    p.add_argument("--modes", default="auto,rb", help="extremefast modes to time beside scikit-image's default")
    args = p.parse_args()
    from skimage.segmentation import random_walker as sk_rw

    from extremefast import random_walker

    if not rp.available():
        raise SystemExit(f"the real scans are not at {rp.SHARED}")
    selection = [b for b in rp.BATTERY if not args.only or any(s in " ".join(map(str, b)) for s in args.only.split(","))]
    modes = [m for m in args.modes.split(",") if m]
    rows, totals = [], {"scikit-image cg_j (default)": 0.0, **{f"extremefast {m}": 0.0 for m in modes}}
    for problem in rp.problems(selection, size=args.size):
        t = time.perf_counter()
        ref = rp.reference_probability(problem)
        t_ref = time.perf_counter() - t
        unknown = problem.seeds == 0
        ref_label = ref >= 0.5
        runs = [("scikit-image cg_j (default)",
                 lambda: sk_rw(problem.data, problem.seeds, beta=problem.beta, spacing=problem.spacing,
                               return_full_prob=True)[1])]
        runs += [(f"extremefast {m}", lambda m=m: random_walker(problem.data, problem.seeds, beta=problem.beta,
                                                                  mode=m, spacing=problem.spacing,
                                                                  return_full_prob=True, device="cpu")[1])
                 for m in modes]
        for name, fn in runs:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out, seconds = solve_timed(fn, args.repeat)
            totals[name] += seconds
            differ = float(np.mean((out[unknown] >= 0.5) != ref_label[unknown]))
            rows.append({"problem": problem.name, "method": name, "unknowns": problem.unknowns,
                         "seconds": seconds, "max |p - p_ref|": float(np.abs(out - ref)[unknown].max()),
                         "labels differ (%)": 100 * differ,
                         "in range": bool(out.min() >= -1e-3 and out.max() <= 1 + 1e-3),
                         "warnings": "; ".join(sorted({str(w.message)[:40] for w in caught})),
                         "reference s": t_ref})
        print(" | ".join(f"{r['method'].split()[-1]} {r['seconds']:.3f}s err {r['max |p - p_ref|']:.4f} "
                         f"diff {r['labels differ (%)']:.4f}%" for r in rows[-len(runs):]), "|", problem.name,
              flush=True)
    base = totals["scikit-image cg_j (default)"]
    summary = [{"method": k, "battery seconds": v, "speed-up vs scikit-image default": base / v}
               for k, v in totals.items()]
    report(f"random walker, real battery ({len(selection)} problems, {args.size}^3 crops, tol 1e-3)", rows, args,
           extra={"totals": summary})
    for s in summary:
        print(f"{s['method']}: {s['battery seconds']:.2f} s for the battery, "
              f"{s['speed-up vs scikit-image default']:.1f}x scikit-image's default")


if __name__ == "__main__":
    main()
