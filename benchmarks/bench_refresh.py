"""A round's pseudo-label refresh on MSD-sized volumes (512 x 512 x 90 at 0.78 x 0.78 x 5 mm):
for every case, the network's probability (here a stand-in: the organ mask shifted by two
voxels and blurred, so that the uncertainty band is real) is regularised by the random
walker on its band and pasted back onto the full grid (``refine_probabilities``: crop,
seeds, random walk, paste-back). The network's forward pass is not part of it.

Baseline in the same run: the same steps with ``skimage.segmentation.random_walker`` (its
default mode) on the CPU, on the first ``--cpu-cases`` cases (per-case times are compared;
the GPU row runs all ``--cases`` as one round). Correctness first: every refreshed label agrees with the
baseline's (Dice of the 0.5 masks >= 0.98) and, on a GPU, with extremefast's CPU answer.
"""
from __future__ import annotations

import warnings

import numpy as np
from _harness import parser, report, timeit


def make_cases(n_cases, n_phantoms, shape, spacing):
    from scipy import ndimage as ndi

    from extremefast.data.synthetic import make_phantom
    from extremefast.pseudo import extreme_points
    from extremefast.pseudo.pseudo_label import normalise_intensity

    phantoms = [make_phantom(100 + k, shape=shape, spacing=spacing) for k in range(n_phantoms)]
    cases = []
    organs = (1, 5, 2, 3, 6, 4)
    for i in range(n_cases):
        image, labels, _ = phantoms[i % n_phantoms]
        mask = labels == organs[(i // n_phantoms) % len(organs)]
        prob = ndi.gaussian_filter(np.roll(mask, 2, axis=0).astype(np.float32), 1.5)
        cases.append((prob, normalise_intensity(image, (-160.0, 240.0)), extreme_points(mask), np.asarray(spacing)))
    return cases


def skimage_refresh(cases, kw):
    """The same steps with scikit-image's random walker."""
    from skimage.segmentation import random_walker as sk_rw

    from extremefast.pseudo.refine import _has_band
    from extremefast.pseudo.roi import crop_resample, paste_back, roi_box
    from extremefast.pseudo.seeds import uncertainty_seeds

    out = []
    for prob, image, points, spacing in cases:
        box = roi_box(points, spacing, image.shape, kw["pad_mm"], (kw["crop_size"],) * 3)
        seeds = uncertainty_seeds(crop_resample(prob, box), kw["radius"])
        if not _has_band(seeds):
            out.append(prob)
            continue
        p = sk_rw(crop_resample(image, box), seeds, beta=kw["beta"], return_full_prob=True)[1]
        out.append(paste_back(np.clip(p, 0, 1).astype(np.float32), box))
    return out


def dice(a, b):
    a, b = a >= 0.5, b >= 0.5
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def main():
    p = parser(__doc__)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--phantoms", type=int, default=2, help="distinct phantoms the cases are drawn from")
    p.add_argument("--device", default="cpu")
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--cpu-cases", type=int, default=4, help="cases for the CPU rows (baseline and extremefast)")
    args = p.parse_args()
    from extremefast.pseudo.refine import refine_probabilities

    warnings.simplefilter("ignore")
    shape, spacing = (512, 512, 90), (0.78, 0.78, 5.0)
    cases = make_cases(args.cases, args.phantoms, shape, spacing)
    kw = dict(pad_mm=20.0, crop_size=args.crop_size, radius=4.0, beta=4000.0)
    few = cases[:args.cpu_cases]
    base = skimage_refresh(few, kw)
    cpu = refine_probabilities(few, device="cpu", **kw)
    worst = min(dice(a, b) for a, b in zip(cpu, base))
    assert worst >= 0.98, f"extremefast and scikit-image refreshes disagree (Dice {worst:.3f})"
    rows = [{"method": "scikit-image random walker, same steps (cpu)", "cases": len(few),
             "seconds": timeit(lambda: skimage_refresh(few, kw), repeat=1, warmup=0), "min Dice vs baseline": 1.0}]
    rows.append({"method": "extremefast refine_probabilities (cpu, case by case)", "cases": len(few),
                 "seconds": timeit(lambda: refine_probabilities(few, device="cpu", **kw), repeat=args.repeat,
                                   warmup=0),
                 "min Dice vs baseline": worst})
    if args.device == "cuda":
        import cupy

        gpu = refine_probabilities(cases, device="cuda", **kw)
        worst_gpu = min(dice(a, b) for a, b in zip(gpu, cpu))
        assert worst_gpu >= 0.99, f"GPU and CPU refreshes disagree (Dice {worst_gpu:.3f})"
        sync = cupy.cuda.Device().synchronize
        rows.append({"method": "extremefast refine_probabilities (cuda, batched)", "cases": len(cases),
                     "seconds": timeit(lambda: refine_probabilities(cases, device="cuda", **kw),
                                       repeat=args.repeat, warmup=1, sync=sync),
                     "min Dice vs baseline": min(dice(a, b) for a, b in zip(gpu, base))})
    per_case_base = rows[0]["seconds"] / rows[0]["cases"]
    for r in rows:
        r["seconds per case"] = r["seconds"] / r["cases"]
        r["speed-up per case vs scikit-image"] = per_case_base / r["seconds per case"]
    report(f"pseudo-label refresh of one round, cases of {shape[0]}x{shape[1]}x{shape[2]}, "
           f"{args.crop_size}^3 random-walker crops", rows, args)


if __name__ == "__main__":
    main()
