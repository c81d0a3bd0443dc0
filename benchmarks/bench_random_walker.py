"""Random walker at 128^3 vs scikit-image (default mode cg_j, and cg_mg), same problem.

Accuracy: max |p - p_ref| against a tightly solved float64 reference (tol 1e-8).
"""
from __future__ import annotations

import warnings

import numpy as np
from _harness import parser, realistic_crop, report, timeit


def main():
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="cases solved together by random_walker_batch (GPU only)")
    args = p.parse_args()
    from skimage.segmentation import random_walker as sk_rw

    from extremefast import random_walker

    crop, seeds, *_ = realistic_crop(size=args.size)
    warnings.simplefilter("ignore")
    ref = random_walker(crop, seeds, mode="cg_j", tol=1e-8, return_full_prob=True, device="cpu")[1]
    rows = []
    results = {}
    runs = [("scikit-image cg_j (default)", lambda: sk_rw(crop, seeds, return_full_prob=True)[1]),
            ("scikit-image cg_mg", lambda: sk_rw(crop, seeds, mode="cg_mg", return_full_prob=True)[1]),
            (f"extremefast auto ({args.device})", lambda: random_walker(crop, seeds, return_full_prob=True,
                                                                       device=args.device)[1]),
            ("extremefast cg_j (Jacobi-CG, cpu)", lambda: random_walker(crop, seeds, mode="cg_j", return_full_prob=True,
                                                                        device="cpu")[1]),
            ("extremefast cg_mg (pyamg, cpu)", lambda: random_walker(crop, seeds, mode="cg_mg",
                                                                     return_full_prob=True)[1])]
    if args.device == "cuda":  # the red-black solve on the GPU (tested; its speed not measured before)
        runs.append(("extremefast rb (red-black, cuda)",
                     lambda: random_walker(crop, seeds, mode="rb", return_full_prob=True, device="cuda")[1]))
    for name, fn in runs:
        out = fn()  # checked before timing
        err = float(np.abs(out - ref).max())
        results[name] = timeit(fn, repeat=args.repeat, warmup=1 if "cuda" in name else 0)
        rows.append({"method": name, "seconds": results[name], "max |p - p_ref|": err,
                     "unknowns": int((seeds == 0).sum())})
    if args.device == "cuda" and args.batch > 0:
        from extremefast import random_walker_batch

        problems = [(crop, seeds)] + [realistic_crop(organ=o, seed=k, size=args.size)[:2]
                                      for o, k in [(1, 3), (3, 3), (5, 0), (1, 0), (3, 0), (6, 3), (6, 0)]]
        problems = (problems * (1 + args.batch // len(problems)))[:args.batch]
        refs = [random_walker(c, s, mode="cg_j", tol=1e-8, return_full_prob=True, device="cpu")[1]
                for c, s in problems]
        run = lambda: random_walker_batch([c for c, _ in problems], [s for _, s in problems], device="cuda")
        outs = run()  # checked before timing
        err = max(float(np.abs(o[1] - r).max()) for o, r in zip(outs, refs))
        name = f"extremefast random_walker_batch, {args.batch} cases (cuda), per case"
        results[name] = timeit(run, repeat=args.repeat, warmup=1) / args.batch
        rows.append({"method": name, "seconds": results[name], "max |p - p_ref|": err,
                     "unknowns": int(sum((s == 0).sum() for _, s in problems) // args.batch)})
    base = results["scikit-image cg_j (default)"]
    for r in rows:
        r["speed-up vs scikit-image default"] = base / r["seconds"]
    phases = {mode: phase_seconds(crop, seeds, args.device, mode, args.repeat)
              for mode in (["cg_j", "rb"] if args.device == "cuda" else ["rb"])}
    report(f"random walker, {args.size}^3 phantom liver crop, paper seeds (beta 130, tol 1e-3)", rows, args,
           extra={"phases (s)": phases})
    print("phases (s, best of repeats): " + "; ".join(
        f"{mode} on {args.device}: " + ", ".join(f"{k} {v:.4f}" for k, v in ph.items()) for mode, ph in phases.items()))


def phase_seconds(crop, seeds, device, mode, repeat):
    """Where the default call's time goes: host preparation, assembly (with the upload),
    solve, and the host-side answer (with the download); best of ``repeat`` runs."""
    import time

    from extremefast.random_walk import segmentation as rws
    from extremefast.xp import array_module

    am = array_module(device)
    sync = (lambda: am.xp.cuda.Stream.null.synchronize()) if am.device == "cuda" else (lambda: None)
    best = {}
    for _ in range(max(2, repeat)):  # the first run compiles
        t = [time.perf_counter()]
        problem = rws._prepare(crop, seeds, None, None, None)
        t.append(time.perf_counter())
        A, rhs, unknown = rws._assemble(am, problem, 130, np.float32)
        sync()
        t.append(time.perf_counter())
        implied, solved = rws._columns(rhs, problem.nlabels)
        part, _ = rws._solve_columns(am, A, rhs[:, solved], mode, 1e-3, 10000, [None] * len(solved))
        sync()
        t.append(time.perf_counter())
        X = am.xp.zeros((part.shape[0], problem.nlabels))
        X[:, solved] = part
        X[:, implied] = 1.0 - part.sum(axis=1)
        rws._finish(problem, am.to_numpy(X), am.to_numpy(unknown), True)
        t.append(time.perf_counter())
        for name, a, b in zip(("prepare", "assemble", "solve", "finish"), t, t[1:]):
            best[name] = min(best.get(name, np.inf), b - a)
    return best


if __name__ == "__main__":
    main()
