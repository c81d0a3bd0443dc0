"""Seeds with the paper's radii (2 and 30 voxels) on a 128^3 crop: exact distance-transform
dilation (compiled transform) vs the same with scipy's distance transform, and vs a generic
ball structuring element (scipy.ndimage.binary_dilation)."""
from __future__ import annotations

import numpy as np
from _harness import parser, realistic_crop, report, timeit


def main():
    args = parser(__doc__).parse_args()
    from scipy import ndimage as ndi
    from skimage.morphology import ball

    from extremefast.pseudo.seeds import scribble_seeds

    _, _, _, _, scribble = realistic_crop()
    ours = scribble_seeds(scribble, 2, 30)
    t_ours = timeit(lambda: scribble_seeds(scribble, 2, 30), repeat=args.repeat)
    rows = [{"method": "extremefast (compiled distance transform)", "seconds": t_ours, "same set": "reference"}]

    def scipy_edt():
        d = ndi.distance_transform_edt(~scribble)
        seeds = np.zeros(scribble.shape, dtype=np.int32)
        seeds[d > 30] = 1
        seeds[d <= 2] = 2
        return seeds

    same = bool(np.array_equal(scipy_edt(), ours))
    t_edt = timeit(scipy_edt, repeat=args.repeat)
    rows.append({"method": "scipy distance_transform_edt, same thresholds", "seconds": t_edt, "same set": same})
    # generic dilation: radius 2 always, radius 30 as far as memory and patience allow
    def generic():
        fg = ndi.binary_dilation(scribble, ball(2))
        bg = ~ndi.binary_dilation(scribble, ball(30))
        return fg, bg

    try:
        import time

        t = time.perf_counter()
        fg, bg = generic()
        t_gen = time.perf_counter() - t
        same = bool(np.array_equal(fg, ours == 2) and np.array_equal(bg & ~fg, ours == 1))
        rows.append({"method": "scipy binary_dilation(ball(30))", "seconds": t_gen, "same set": same})
    except MemoryError:
        rows.append({"method": "scipy binary_dilation(ball(30))", "seconds": float("nan"), "same set": "MemoryError"})
    for r in rows:
        r["ratio to extremefast"] = r["seconds"] / t_ours
    report("background/foreground seeds, radius 30 / 2, 128^3", rows, args)


if __name__ == "__main__":
    main()
