"""Random walker on the real-problem battery (benchmarks/_real_problems.py) vs scikit-image's
default mode, in the same run.

Per problem: seconds, largest error against a tight float64 reference, the share of unknown
voxels whose label differs from the reference's, and whether any probability left
[-prob_tol, 1 + prob_tol]. Every answer is checked before its time is taken; the battery's
total time gives the ratio.

For extremefast also the CG iterations of the timed run (all columns, retries included),
the seconds inside CG and the bytes its iterations stream: each iteration reads every array
of the system's stencil once and the CG vectors as many times as the kernels touch them
(:func:`bytes_per_iteration`; gathers counted once, so a floor on the traffic). Their
ratio, GB/s, stands beside the machine's copy bandwidth measured in the same run by a
compiled copy on every core (bytes read + written), so the distance to the copy bandwidth is
a number ('cg_mg', whose pyamg cycle is not modelled, gets none).
"""
from __future__ import annotations

import time
import warnings
from contextlib import nullcontext as _nothing

import numpy as np
from _harness import parser, report

import _real_problems as rp


def solve_timed(fn, repeat, meter=None):
    out = fn()
    best, cg = np.inf, None
    for _ in range(repeat):
        if meter is not None:
            meter.reset()
        t = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t
        if seconds < best:
            best, cg = seconds, (meter.snapshot() if meter is not None else None)
    return out, best, cg


def bytes_per_iteration(system) -> int:
    """Bytes one CG iteration on ``system`` streams at least: its stencil arrays once, the
    float64 red values of the red-black form written and read once, and the CG vectors as the
    compiled steps touch them (mat-vec: p read, A p written; update: x, r, p, A p, 1/diag
    and z read, x, r and z written; direction: p, z read, p written)."""
    vector = np.dtype(system.dtype).itemsize * system.n
    if getattr(system, "inv_diag", None) is None:  # pyamg's V-cycle ('cg_mg'): not modelled
        return 0
    if hasattr(system, "Rc"):  # the red-black reduced system
        stencil = sum(a.nbytes for a in (system.Rc, system.Rw, system.inv_Rd, system.Bc, system.Bw, system.Bs))
        stencil += 2 * system._t.nbytes
    else:
        A = system.A
        stencil = A.cols.nbytes + A.vals.nbytes + A.coupling.nbytes
    return int(stencil + (2 + 9 + 3) * vector)


class CGMeter:
    """Counts the iterations, seconds and streamed bytes of every CG solve of the walker
    (wraps the driver where segmentation.py calls it)."""

    def __init__(self):
        from extremefast.random_walk import segmentation

        self.segmentation, self.real = segmentation, segmentation.conjugate_gradient
        self.reset()

    def reset(self):
        self.iterations, self.seconds, self.bytes = 0, 0.0, 0

    def snapshot(self):
        streamed = self.bytes > 0 and self.seconds > 0
        return {"iterations": self.iterations, "cg seconds": self.seconds,
                "GB/s": self.bytes / self.seconds / 1e9 if streamed else float("nan")}

    def __enter__(self):
        real = self.real

        def counted(system, b, x0=None, **kw):
            calls = [0]
            apply_dot = system.apply_dot

            def counting(p, out):
                calls[0] += 1
                return apply_dot(p, out)

            system.apply_dot = counting
            t = time.perf_counter()
            try:
                return real(system, b, x0, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                its = max(calls[0] - (x0 is not None), 0)  # a start from x0 costs one product
                self.iterations += its
                self.bytes += its * bytes_per_iteration(system)
                del system.apply_dot

        self.segmentation.conjugate_gradient = counted
        return self

    def __exit__(self, *exc):
        self.segmentation.conjugate_gradient = self.real


def _cg_columns(cg, bandwidth) -> dict:
    """The CG columns of a row ("" for scikit-image's, which are not measured)."""
    if cg is None:
        return {"iterations": "", "cg seconds": "", "GB/s": "", "GB/s / copy": ""}
    return {**cg, "GB/s / copy": cg["GB/s"] / bandwidth}


def copy_bandwidth(mb=256, repeat=5) -> float:
    """GB/s of a parallel compiled copy of ``mb`` MB on every core, counting the bytes read and
    written once each (a write's hidden read of its cache line is not counted, as it is not in
    :func:`bytes_per_iteration`: both figures are floors of the traffic, compared alike)."""
    import numba

    @numba.njit(parallel=True)
    def copy(a, b):
        for i in numba.prange(a.shape[0]):
            b[i] = a[i]

    a = np.ones(mb * 2**20 // 8)
    b = np.empty_like(a)
    copy(a, b)
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        copy(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


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
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth: {bandwidth:.1f} GB/s (read + write, every core)", flush=True)
    meter = CGMeter()
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
            ours = name.startswith("extremefast")
            with warnings.catch_warnings(record=True) as caught, (meter if ours else _nothing()):
                warnings.simplefilter("always")
                out, seconds, cg = solve_timed(fn, args.repeat, meter if ours else None)
            totals[name] += seconds
            differ = float(np.mean((out[unknown] >= 0.5) != ref_label[unknown]))
            rows.append({"problem": problem.name, "method": name, "unknowns": problem.unknowns,
                         "seconds": seconds, "max |p - p_ref|": float(np.abs(out - ref)[unknown].max()),
                         "labels differ (%)": 100 * differ,
                         "in range": bool(out.min() >= -1e-3 and out.max() <= 1 + 1e-3),
                         "warnings": "; ".join(sorted({str(w.message)[:40] for w in caught})),
                         "reference s": t_ref, **_cg_columns(cg, bandwidth)})
        print(" | ".join(f"{r['method'].split()[-1]} {r['seconds']:.3f}s err {r['max |p - p_ref|']:.4f} "
                         f"diff {r['labels differ (%)']:.4f}%"
                         + (f" its {r['iterations']} {r['GB/s']:.1f} GB/s" if r["iterations"] != "" else "")
                         for r in rows[-len(runs):]), "|", problem.name, flush=True)
    base = totals["scikit-image cg_j (default)"]
    summary = [{"method": k, "battery seconds": v, "speed-up vs scikit-image default": base / v}
               for k, v in totals.items()]
    for m in modes:
        mine = [r for r in rows if r["method"] == f"extremefast {m}" and r["cg seconds"]]
        its, cg_s = sum(r["iterations"] for r in mine), sum(r["cg seconds"] for r in mine)
        gbs = sum(r["GB/s"] * r["cg seconds"] for r in mine) / cg_s if cg_s else float("nan")
        summary.append({"method": f"extremefast {m} (CG only)", "iterations": its, "cg seconds": cg_s, "GB/s": gbs,
                        "copy GB/s": bandwidth, "share of copy bandwidth": gbs / bandwidth})
        print(f"extremefast {m}: {its} CG iterations in {cg_s:.2f} s of the battery's "
              f"{totals[f'extremefast {m}']:.2f} s, {gbs:.1f} GB/s streamed against a copy's {bandwidth:.1f} GB/s "
              f"({100 * gbs / bandwidth:.0f}%)")
    report(f"random walker, real battery ({len(selection)} problems, {args.size}^3 crops, tol 1e-3)", rows, args,
           extra={"totals": summary, "copy GB/s": bandwidth})
    for s in summary[:len(totals)]:
        print(f"{s['method']}: {s['battery seconds']:.2f} s for the battery, "
              f"{s['speed-up vs scikit-image default']:.1f}x scikit-image's default")


if __name__ == "__main__":
    main()
