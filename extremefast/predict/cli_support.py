"""Pairing scans with points files and outputs, for ``extremefast predict`` on one scan or a folder."""
from __future__ import annotations

from pathlib import Path

from ..data.points import match_points_files
from ..errors import DataError, InputError
from ..imageio import OUTPUT_FORMATS, SUFFIXES, image_stem, image_suffix, is_dicom_folder, list_images
from ..nifti import ensure_output_folder

def plan_predictions(image: Path, points: Path, out: Path, fmt: str = "nii.gz") -> list[tuple[Path, Path, Path]]:
    """(scan, points file, output) for one scan, or for every scan of a folder.

    One scan (a file, or a folder holding one DICOM series): ``out`` is the output file, in the
    format its name asks for. Folder mode: each scan ``NAME.<format>`` (or DICOM folder ``NAME``)
    needs ``NAME.mrk.json`` or ``NAME.json`` in the points folder (an ``_0000`` channel suffix
    may be left out), and a points file without its scan is an error; outputs are
    ``out/NAME.<fmt>`` (``fmt="input"``: the scan's own format, NIfTI for DICOM). Every pair is
    checked before any work starts, so a missing file stops nothing half-way.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if not image.exists():
        raise DataError(f"{image}: not found")
    if not points.exists():
        raise DataError(f"{points}: not found")
    if image.is_file() or is_dicom_folder(image):
        if points.is_dir():
            raise DataError(f"{points}: is a folder; give the points file of {image.name}")
        if out.is_dir():
            raise DataError(f"{out}: is a folder; give the output file name (or use folder mode)")
        if image_suffix(out) is None:
            raise DataError(f"{out}: name the output .nii.gz, .nrrd, .seg.nrrd or .mha")
        if out.parent and not out.parent.exists():
            raise DataError(f"{out.parent}: output folder does not exist")
        return [(image, points, out)]
    if not points.is_dir():
        raise DataError(f"{points}: a folder of scans needs a folder of points files")
    images = list_images(image)
    if not images:
        raise DataError(f"{image}: no scans (NIfTI, NRRD, MetaImage or DICOM-series folders)")
    found, orphans = match_points_files(points, [image_stem(i) for i in images])
    if orphans:
        raise DataError(f"{points}: no scan in {image} for the points file(s) {', '.join(orphans[:5])}")
    jobs, missing = [], []
    for img in images:
        stem = image_stem(img)
        if found[stem] is None:
            missing.append(img.name)
        else:
            jobs.append((img, found[stem], stem.removesuffix("_0000")))
    if missing:
        raise DataError(f"{points}: no points file for {len(missing)} scan(s): {', '.join(missing[:5])}")
    out = ensure_output_folder(out)
    return [(img, pts, out / f"{name}{_output_suffix(img, fmt)}") for img, pts, name in jobs]


def _output_suffix(image: Path, fmt: str) -> str:
    if fmt != "input":
        return f".{fmt}"
    suffix = image_suffix(image)
    return suffix if suffix in SUFFIXES and not image.is_dir() else ".nii.gz"


def run_predictions(predictor, jobs, out: Path, *, refine: bool = False, with_walker: bool = False,
                    probabilities: bool = False, organ: str = "organ", progress=None) -> dict:
    """Predict every job; in folder mode also ``out/summary.json`` and ``out/contact_sheet.png``."""
    from ..jsonio import write_json
    from ..viz import save_contact_sheet
    from .predictor import predict_file

    records, tiles = [], []
    for img, pts, dst in jobs:
        _, record, tile = predict_file(predictor, img, pts, dst, refine=refine, with_walker=with_walker,
                                       probabilities=probabilities, organ=organ, return_details=True)
        records.append(record)
        tiles.append(tile)
        if progress is not None:
            progress(img, dst)
    summary = {"checkpoint_config": predictor.config.to_dict(), "refine": refine, "with_walker": with_walker,
               "cases": records}
    if out.is_dir():
        write_json(out / "summary.json", summary)
        save_contact_sheet(out / "contact_sheet.png", tiles, title="predictions")
    return summary
