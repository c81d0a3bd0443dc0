"""Pairing images with points files and outputs for ``extremefast predict``."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..nifti import ensure_output_folder, nifti_stem


def plan_predictions(image: Path, points: Path, out: Path) -> list[tuple[Path, Path, Path]]:
    """(image, points file, output) for one image, or for every image of a folder.

    In folder mode each ``NAME.nii.gz`` needs ``NAME.json`` or ``NAME.mrk.json`` in the
    points folder (an ``_0000`` channel suffix may be left out); every pair is checked
    before any work starts, so a missing file stops nothing half-way.
    """
    if not image.exists():
        raise DataError(f"{image}: not found")
    if not points.exists():
        raise DataError(f"{points}: not found")
    if image.is_file():
        if points.is_dir():
            raise DataError(f"{points}: is a folder; give the points file of {image.name}")
        if out.is_dir():
            raise DataError(f"{out}: is a folder; give the output file name (or use folder mode)")
        if out.parent and not out.parent.exists():
            raise DataError(f"{out.parent}: output folder does not exist")
        return [(image, points, out)]
    if not points.is_dir():
        raise DataError(f"{points}: folder mode (--image is a folder) needs a folder of points files")
    images = sorted(p for p in image.iterdir() if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("."))
    if not images:
        raise DataError(f"{image}: no .nii or .nii.gz images")
    jobs, missing = [], []
    for img in images:
        stem = nifti_stem(img)
        names = [stem]
        if stem.endswith("_0000"):
            names.append(stem[:-5])
        candidates = [points / f"{n}{ext}" for n in names for ext in (".mrk.json", ".json")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            missing.append(img.name)
        else:
            jobs.append((img, found, names[-1]))
    if missing:
        raise DataError(f"{points}: no points file for {len(missing)} image(s): {', '.join(missing[:5])}")
    out = ensure_output_folder(out)
    return [(img, pts, out / f"{name}.nii.gz") for img, pts, name in jobs]
