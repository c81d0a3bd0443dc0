"""An annotator's collection made from a labelled one: scans without masks, clicks as 3D Slicer markups.

For measuring the clicks-only workflow (``train --points``) on real anatomy: each mask's six
extreme points, moved by two-sided Gaussian noise of ``--noise-mm`` per axis (kept inside the
organ, as :func:`extremefast.pseudo.simulate_clicks` does), are written as ``CASE.mrk.json``
in LPS, Slicer's file convention; the scans are copied (or converted with ``--format``) into a
folder with no mask beside them.

    python benchmarks/clicks_collection.py --data ../shared/data/ct_sarcoma --label 1 \\
        --scans /tmp/sarcoma/scans --clicks /tmp/sarcoma/clicks --noise-mm 2
"""
from __future__ import annotations

import argparse
import shutil
import zlib
from pathlib import Path

import numpy as np

from extremefast.data import open_dataset
from extremefast.data.points import write_points
from extremefast.imageio import in_file_grid, save_image
from extremefast.nifti import ensure_output_folder
from extremefast.pseudo import extreme_points
from extremefast.pseudo.clicks import simulate_clicks


def make_collection(data, label: int, scans, clicks, noise_mm: float = 2.0, seed: int = 0,
                    fmt: str | None = None) -> list[str]:
    """Write the collection; returns the case names (cases whose mask lacks the organ are left out)."""
    ds = open_dataset(str(data))
    scans, clicks = ensure_output_folder(scans), ensure_output_folder(clicks)
    names = []
    for case in ds.cases:
        image, labels = ds.load_case(case)
        mask = labels.array == label
        if not mask.any():
            continue
        points = extreme_points(mask)
        if noise_mm > 0:
            rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
            points = simulate_clicks(points, mask, image.spacing, noise_mm, rng=rng)
        write_points(clicks / f"{case.name}.mrk.json", points, image.affine, "LPS", slicer=True)
        if fmt is None:
            suffix = "".join(case.image_path.suffixes[-2:]) if case.image_path.name.endswith(".nii.gz") \
                else case.image_path.suffix
            shutil.copyfile(case.image_path, scans / f"{case.name}{suffix}")
        else:
            array, affine = in_file_grid(image, image.array)
            save_image(scans / f"{case.name}.{fmt}", array.astype(np.int16), affine)
        names.append(case.name)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--label", type=int, required=True)
    parser.add_argument("--scans", required=True, type=Path)
    parser.add_argument("--clicks", required=True, type=Path)
    parser.add_argument("--noise-mm", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default=None, help="convert the scans, e.g. nrrd or mha (default: copy)")
    args = parser.parse_args()
    names = make_collection(args.data, args.label, args.scans, args.clicks, args.noise_mm, args.seed, args.format)
    print(f"{len(names)} scans in {args.scans}, their clicks in {args.clicks}")


if __name__ == "__main__":
    main()
