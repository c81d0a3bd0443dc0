"""The annotator's workflow: scan formats and their geometry, clicks from files, no masks."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from extremefast.data.points import read_points, write_points
from extremefast.errors import DataError, InputError
from extremefast.imageio import (file_affine, in_file_grid, list_images, load_image, save_image,
                                 write_dicom_series)
from extremefast.pseudo import extreme_points

from conftest import SMALL_PHANTOM_SHAPE, SMALL_PHANTOM_SPACING

SARCOMA_CASE = "STS_002"  # the smallest sarcoma scan (161 x 143 x 48)
FILE_FORMATS = (".nrrd", ".seg.nrrd", ".mha", ".mhd", ".nii")


@pytest.fixture(scope="module")
def sarcoma(shared_data):
    root = shared_data / "ct_sarcoma"
    image = load_image(root / "imagesTr" / f"{SARCOMA_CASE}.nii.gz", dtype=None)
    labels = load_image(root / "labelsTr" / f"{SARCOMA_CASE}.nii.gz", dtype=None)
    return image, labels.array == 1


@pytest.fixture(scope="module")
def sarcoma_copies(sarcoma, tmp_path_factory):
    """The same scan as NIfTI, NRRD and a DICOM series, each in a plain folder, and its clicks."""
    image, mask = sarcoma
    root = tmp_path_factory.mktemp("copies")
    folders = {}
    for name, write in (("nifti", lambda f: save_image(f / f"{SARCOMA_CASE}.nii.gz", image.array, image.affine)),
                        ("nrrd", lambda f: save_image(f / f"{SARCOMA_CASE}.nrrd", image.array, image.affine)),
                        ("dicom", lambda f: write_dicom_series(f / SARCOMA_CASE, image.array, image.affine))):
        folders[name] = root / name
        folders[name].mkdir()
        write(folders[name])
    clicks = root / "clicks"
    clicks.mkdir()
    write_points(clicks / f"{SARCOMA_CASE}.mrk.json", extreme_points(mask), image.affine, "LPS", slicer=True)
    return folders, clicks


@pytest.mark.parametrize("suffix", FILE_FORMATS)
def test_file_formats_keep_voxels_and_geometry_of_a_real_scan(sarcoma, tmp_path, suffix):
    image, _ = sarcoma
    path = save_image(tmp_path / f"scan{suffix}", image.array, image.affine)
    back = load_image(path, dtype=None)
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-6)


def test_dicom_series_keeps_voxels_and_geometry_of_a_real_scan(sarcoma, tmp_path):
    image, _ = sarcoma
    folder = write_dicom_series(tmp_path / "series", image.array, image.affine)
    assert len(list(folder.iterdir())) == image.shape[2]
    back = load_image(folder, dtype=None)
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-5)  # positions are written as text
    assert list_images(tmp_path) == [folder]


def test_nrrd_stores_lps_and_slicer_segment_fields(sarcoma, tmp_path):
    image, mask = sarcoma
    path = save_image(tmp_path / "mask.seg.nrrd", mask.astype(np.uint8), image.affine, segment_name="tumour")
    header = path.read_bytes().split(b"\n\n")[0].decode()
    assert "space: left-posterior-superior" in header
    origin = [float(v) for v in re.search(r"space origin: \((.*)\)", header).group(1).split(",")]
    # NIfTI's affine is RAS; NRRD (like DICOM and Slicer) stores LPS: x and y negated
    np.testing.assert_allclose(origin, image.affine[:3, 3] * [-1, -1, 1], atol=1e-6)
    assert "Segment0_Name:=tumour" in header and "Segment0_LabelValue:=1" in header
    lo, hi = np.argwhere(mask).min(axis=0), np.argwhere(mask).max(axis=0)
    extent = " ".join(f"{a} {b}" for a, b in zip(lo, hi))
    assert f"Segment0_Extent:={extent}" in header


def test_lps_and_ras_clicks_of_a_real_scan_land_on_the_same_voxels(sarcoma, tmp_path):
    image, mask = sarcoma
    pts = extreme_points(mask)
    world_ras = (image.affine @ np.c_[pts, np.ones(6)].T).T[:, :3]
    lps = tmp_path / "lps.mrk.json"
    lps.write_text(json.dumps({"markups": [{"coordinateSystem": "LPS", "controlPoints": [
        {"position": (p * [-1, -1, 1]).tolist()} for p in world_ras]}]}))
    ras = tmp_path / "ras.json"
    ras.write_text(json.dumps({"space": "RAS", "points": world_ras.tolist()}))
    for f in (lps, ras):
        np.testing.assert_array_equal(read_points(f, image.affine, image.shape), pts)


@pytest.mark.parametrize("case", ["STS_002", "STS_004", "STS_006"])
def test_clicks_in_any_order_are_paired_as_the_masks_extreme_points(shared_data, tmp_path, case):
    from extremefast.pseudo import simulate_clicks

    root = shared_data / "ct_sarcoma"
    image = load_image(root / "imagesTr" / f"{case}.nii.gz", dtype=None)
    mask = load_image(root / "labelsTr" / f"{case}.nii.gz", dtype=None).array == 1
    clicks = simulate_clicks(extreme_points(mask), mask, image.spacing, 2.0, rng=0)
    rng = np.random.default_rng(1)
    for n in range(5):
        shuffled = clicks[rng.permutation(6)]
        path = write_points(tmp_path / f"{n}.mrk.json", shuffled, image.affine, "LPS", slicer=True)
        got = read_points(path, image.affine, image.shape)
        pairs = {frozenset(map(tuple, got[2 * a:2 * a + 2])) for a in range(3)}
        assert pairs == {frozenset(map(tuple, clicks[2 * a:2 * a + 2])) for a in range(3)}
        np.testing.assert_array_equal(read_points(write_points(tmp_path / "in_order.json", clicks), image.affine,
                                                  image.shape), clicks)


def test_orientation_gives_the_same_array_whatever_the_files_voxel_order(shared_data, tmp_path):
    """A head-and-neck scan (axes posterior, left, inferior) and a copy with its axes permuted
    and flipped: reoriented, both are the same array on the same grid, and back again exact."""
    original = load_image(shared_data / "ct_headneck" / "imagesTr" / "pt_100.nii.gz", dtype=None)
    perm, flip = (2, 0, 1), 1
    array = np.flip(original.array.transpose(perm), axis=flip)
    affine = original.affine[:, list(perm) + [3]].copy()
    n = array.shape[flip]
    affine[:3, 3] += affine[:3, flip] * (n - 1)
    affine[:3, flip] *= -1
    save_image(tmp_path / "permuted.nii.gz", array, affine)
    a = load_image(shared_data / "ct_headneck" / "imagesTr" / "pt_100.nii.gz", dtype=None, oriented=True)
    b = load_image(tmp_path / "permuted.nii.gz", dtype=None, oriented=True)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    assert a.affine[0, 0] < 0 and a.affine[1, 1] < 0 and a.affine[2, 2] > 0  # i to the left, j back, k up
    back, back_affine = in_file_grid(b, b.array)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_affine, load_image(tmp_path / "permuted.nii.gz").affine, atol=1e-5)
    np.testing.assert_allclose(file_affine(b), back_affine)
    # voxel-space points index the file's own grid
    pts = np.array([[0, 0, 0], [5, 6, 7], [127, 1, 2], [3, 127, 4], [9, 8, 127], [64, 64, 64]])
    f = write_points(tmp_path / "v.json", pts)
    got = read_points(f, b.affine, b.shape, voxel_affine=file_affine(b))
    world = (file_affine(b) @ np.c_[pts, np.ones(6)].T).T[:, :3]
    landed = (b.affine @ np.c_[got, np.ones(6)].T).T[:, :3]  # the same six points, paired by axis
    np.testing.assert_allclose(np.unique(landed.round(3), axis=0), np.unique(world.round(3), axis=0), atol=1e-3)


def test_pseudo_labels_from_nifti_nrrd_and_dicom_are_identical_in_world_space(sarcoma_copies, tmp_path):
    from extremefast.data import open_dataset
    from extremefast.pseudo import get_preset
    from extremefast.pseudo.runner import run_pseudo_labels
    from extremefast.data.points import pair_points

    folders, clicks = sarcoma_copies
    results = {}
    for name, folder in folders.items():
        ds = open_dataset(str(folder))
        paired, without = pair_points(ds, clicks)
        assert without == []
        summary = run_pseudo_labels(ds, None, tmp_path / name, get_preset("default"), workers=1, points=paired)
        assert summary["clicks_from"] == "points files" and summary["dice_rests_on"] == "no mask"
        assert (tmp_path / name / "contact_sheet.png").stat().st_size > 0
        results[name] = load_image(tmp_path / name / f"{SARCOMA_CASE}.nii.gz", oriented=True)
    ref = results["nifti"]
    assert (ref.array >= 0.5).sum() > 1000
    for name in ("nrrd", "dicom"):
        np.testing.assert_allclose(results[name].affine, ref.affine, atol=1e-5)
        np.testing.assert_array_equal(results[name].array >= 0.5, ref.array >= 0.5, err_msg=name)


# ------------------------------------------------------------------------------------ bad input
def _one_line(exc_info, *names):
    text = str(exc_info.value)
    assert "\n" not in text
    for n in names:
        assert str(n) in text


def test_dicom_folder_with_two_series_is_refused(sarcoma, tmp_path):
    image, _ = sarcoma
    small = image.array[:20, :20, :4]
    write_dicom_series(tmp_path / "both", small, image.affine)
    shifted = image.affine.copy()
    shifted[:3, 3] += 100.0
    write_dicom_series(tmp_path / "other", small, shifted)
    for f in (tmp_path / "other").iterdir():
        shutil.move(f, tmp_path / "both" / f"b_{f.name}")
    with pytest.raises(DataError, match="2 DICOM series") as info:
        load_image(tmp_path / "both")
    _one_line(info, tmp_path / "both")


def test_dicom_series_with_mixed_voxel_types_or_a_missing_slice_is_refused(sarcoma, tmp_path):
    import SimpleITK as sitk

    image, _ = sarcoma
    small = image.array[:20, :20, :5]
    folder = write_dicom_series(tmp_path / "mixed", small, image.affine)
    # one slice rewritten as 8-bit, keeping its series and position
    target = folder / "slice_0003.dcm"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(target))
    reader.LoadPrivateTagsOn()
    plane = reader.Execute()
    recast = sitk.Cast(sitk.Clamp(plane, lowerBound=0, upperBound=255), sitk.sitkUInt8)
    for key in plane.GetMetaDataKeys():
        recast.SetMetaData(key, plane.GetMetaData(key))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(target))
    writer.Execute(recast)
    with pytest.raises(DataError, match="differ in voxel type") as info:
        load_image(folder)
    _one_line(info, folder)
    gap = write_dicom_series(tmp_path / "gap", small, image.affine)
    (gap / "slice_0003.dcm").unlink()
    with pytest.raises(DataError, match="not evenly spaced"):
        load_image(gap)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + b"\0" * 10),
     "not a readable NRRD"),
    (lambda p: p.write_bytes(b"definitely not an image"), "not a readable"),
])
def test_corrupt_scans_are_refused_with_one_line(tmp_path, make, message):
    path = tmp_path / "scan.nrrd"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        load_image(path)
    _one_line(info, path)


def test_colour_images_and_unknown_formats_are_refused(tmp_path):
    import SimpleITK as sitk

    rgb = sitk.Image([8, 8, 4], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(DataError, match="3 values per voxel") as info:
        load_image(tmp_path / "rgb.mha")
    _one_line(info, tmp_path / "rgb.mha")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="unknown image format"):
        load_image(tmp_path / "scan.png")
    with pytest.raises(InputError, match="unknown output format"):
        save_image(tmp_path / "out.png", np.zeros((2, 2, 2)), np.eye(4))


# ------------------------------------------------------------------------------- no masks at all
@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """Six phantoms as an annotator has them: a plain folder of scans (NIfTI and NRRD mixed), no
    masks, and a folder of Slicer clicks (the masks' extreme points); the masks kept apart."""
    from extremefast.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("annotated")
    ds = write_synthetic_dataset(root / "labelled", cases=6, seed=9, shape=SMALL_PHANTOM_SHAPE,
                                 spacing=SMALL_PHANTOM_SPACING)
    scans, clicks = root / "scans", root / "clicks"
    scans.mkdir()
    clicks.mkdir()
    for n, image_path in enumerate(sorted((ds / "imagesTr").glob("*.nii.gz"))):
        name = image_path.name[: -len(".nii.gz")]
        image = load_image(image_path, dtype=None)
        mask = load_image(ds / "labelsTr" / image_path.name, dtype=None).array == 1
        save_image(scans / (f"{name}.nrrd" if n % 2 else f"{name}.nii.gz"), image.array, image.affine)
        write_points(clicks / f"{name}.mrk.json", extreme_points(mask), image.affine, "LPS", slicer=True)
    return ds, scans, clicks


def test_train_from_clicks_alone_then_predict_a_folder(annotated, tmp_path, cli):
    ds, scans, clicks = annotated
    first = sorted(scans.iterdir())[0]
    (clicks / f"{first.name.split('.')[0]}.mrk.json").rename(tmp_path / "aside.mrk.json")  # one case unclicked
    try:
        code, out, err = cli("train", "--data", scans, "--points", clicks, "--out", tmp_path / "run",
                             "--rounds", "2", "--epochs", "2", "--crop-size", "32", "--batch-size", "2")
    finally:
        (tmp_path / "aside.mrk.json").rename(clicks / f"{first.name.split('.')[0]}.mrk.json")
    assert code == 0, err
    assert "left out" in out and "pseudo labels settled" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["clicks_from"] == ["points files"] and summary["selection"] == "settle"
    assert summary["cases_without_points"] == [first.name.split(".")[0]]
    assert summary["dice_rests_on"] == {"validation cases with a mask": 0, "training cases with a mask": 0}
    assert summary["final_val_dice"]["n"] == 0 and summary["final_val_dice"]["mean"] is None
    assert all("label_change" in r for r in summary["rounds"][1:])
    # predict the whole folder, as Slicer segmentations, with a summary and a contact sheet
    code, out, err = cli("predict", "--checkpoint", tmp_path / "run" / "model.pt", "--image", scans,
                         "--points", clicks, "--out", tmp_path / "pred", "--format", "seg.nrrd", "--organ", "spleen")
    assert code == 0, err
    written = sorted((tmp_path / "pred").glob("*.seg.nrrd"))
    assert len(written) == 6
    assert json.loads((tmp_path / "pred" / "summary.json").read_text())["cases"][0]["voxels"] >= 0
    assert (tmp_path / "pred" / "contact_sheet.png").stat().st_size > 0
    header = written[0].read_bytes().split(b"\n\n")[0].decode()
    assert "Segment0_Name:=spleen" in header
    # Dice against the masks the annotator never gave
    code, out, err = cli("evaluate", "--pred", tmp_path / "pred", "--data", ds, "--organ", "spleen")
    assert code == 0, err


def test_clicks_without_a_scan_and_bad_clicks_stop_before_any_work(annotated, tmp_path, cli):
    ds, scans, clicks = annotated
    extra = clicks / "nobody.mrk.json"
    shutil.copyfile(next(clicks.iterdir()), extra)
    try:
        code, out, err = cli("train", "--data", scans, "--points", clicks, "--out", tmp_path / "run")
    finally:
        extra.unlink()
    assert code == 1 and "nobody.mrk.json" in err and "no scan" in err
    assert not (tmp_path / "run" / "state.pt").exists()
    bad = tmp_path / "bad_clicks"
    shutil.copytree(clicks, bad)
    first = sorted(bad.iterdir())[0]
    doc = json.loads(first.read_text())
    doc["markups"][0]["controlPoints"] = doc["markups"][0]["controlPoints"][:5]
    first.write_text(json.dumps(doc))
    code, out, err = cli("train", "--data", scans, "--points", bad, "--out", tmp_path / "run2")
    assert code == 1 and first.name in err and "six" in err and len(err.strip().splitlines()) == 1
    # the ablation's full supervision needs masks: refused before the first variant runs
    code, out, err = cli("ablation", "--data", scans, "--points", clicks, "--variants", "f,full",
                         "--out", tmp_path / "ablation")
    assert code == 1 and "variant full trains on masks" in err
    assert not (tmp_path / "ablation" / "f").exists()


def test_pseudo_label_with_every_case_skipped_exits_1(small_synthetic, tmp_path, cli):
    data = tmp_path / "no_spleen"
    shutil.copytree(small_synthetic, data)
    for f in (data / "labelsTr").glob("*.nii.gz"):  # the organ erased from every mask
        labels = load_image(f, dtype=None)
        save_image(f, np.where(labels.array == 1, 0, labels.array).astype(np.uint8), labels.affine)
    code, out, err = cli("pseudo-label", "--data", data, "--organ", "spleen", "--out", tmp_path / "pl")
    assert code == 1, out
    assert "no pseudo label was made" in err and "3 case(s) skipped" in err


def test_notes_that_hold_for_many_cases_read_once():
    from extremefast.pseudo.clicks import case_problems, summarise_case_notes

    pts = np.array([[0, 5, 5], [9, 5, 5], [5, 1, 5], [5, 9, 5], [5, 5, 1], [5, 5, 8]])
    thick = {f"c{i}": case_problems(pts + 1, (12, 12, 12), (0.8, 0.8, 2.5 + 0.05 * i), None)[1]
             for i in range(4)}
    border = case_problems(pts, (10, 10, 10), (1.0, 1.0, 1.0), None)[1]
    lines = summarise_case_notes({**thick, "edge": border}, 10)
    assert lines == ["4 of 10 cases: slices 3.1-3.3 times thicker than their pixels: boundaries across the slices "
                     "are coarse",
                     "1 of 10 cases: the organ touches the scan's border: it may go on outside the scan"]
