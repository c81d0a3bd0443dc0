"""Data layer: NIfTI, MSD reader, phantoms, split, cache, and their bad inputs."""
from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from extremefast.data import ArrayCache, open_dataset, open_msd, train_val_split
from extremefast.data.synthetic import make_phantom
from extremefast.errors import DataError, InputError
from extremefast.nifti import load_nifti, save_nifti

SHARED_CASES = {
    "ct_abdomen": ((512, 512, 20), (0.9765625, 0.9765625, 2.0), {1: "spleen", 5: "liver", 7: "pancreas"}),
    "mr_abdomen": ((117, 91, 20), (3.0, 3.0, 3.0), {1: "spleen", 2: "kidney_right", 5: "liver"}),
    "ct_lung_tumour": ((512, 512, 48), (0.5703125, 0.5703125, 5.0), {}),
}


@pytest.mark.parametrize("name", sorted(SHARED_CASES))
def test_shared_scans_load_with_real_spacing_and_labels(shared_data, name):
    shape, spacing, organs = SHARED_CASES[name]
    ds = open_msd(shared_data / name)
    image, label = ds.load_case(ds.cases[0])
    assert image.shape == shape and label.shape == shape
    np.testing.assert_allclose(image.spacing, spacing, rtol=1e-6)
    for value, organ in organs.items():
        assert ds.labels[value] == organ
        assert ds.resolve_label(organ=organ) == value
        assert (label.array == value).sum() > 0
    assert np.isfinite(image.array).all()


def test_nifti_round_trip_keeps_affine(tmp_path, rng):
    affine = np.array([[-0.8, 0, 0, 10], [0, 0.7, 0.1, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    data = rng.normal(size=(7, 8, 9)).astype(np.float32)
    save_nifti(tmp_path / "a.nii.gz", data, affine)
    back = load_nifti(tmp_path / "a.nii.gz")
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(back.array, data)
    assert not list(tmp_path.glob(".*tmp*"))


def test_phantoms_are_deterministic_and_seed_dependent():
    a = make_phantom(3, shape=(64, 56, 16), spacing=(2.5, 2.5, 8))
    b = make_phantom(3, shape=(64, 56, 16), spacing=(2.5, 2.5, 8))
    c = make_phantom(4, shape=(64, 56, 16), spacing=(2.5, 2.5, 8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_phantom_has_plausible_ct_anatomy():
    image, labels, affine = make_phantom(7)
    np.testing.assert_allclose(np.diag(affine)[:3], (0.8, 0.8, 2.5))
    for value in range(1, 7):
        assert (labels == value).sum() > 1000, value
    spleen = image[labels == 1].mean()
    liver = image[labels == 5].mean()
    assert 30 < spleen < 70 and 40 < liver < 80
    assert image.min() < -900  # air around the body
    # the spleen touches tissue of nearly its own intensity (what makes the task hard)
    from scipy import ndimage as ndi

    ring = ndi.binary_dilation(labels == 1, iterations=2) & (labels != 1)
    similar = np.abs(image[ring] - spleen) < 25
    assert similar.mean() > 0.15


def test_synthetic_cli_writes_dataset_that_info_reads(tmp_path, cli):
    out = tmp_path / "syn"
    code, stdout, _ = cli("data", "synthetic", "--cases", 2, "--out", out, "--seed", 3)
    assert code == 0, stdout
    code, stdout, _ = cli("data", "info", "--data", out)
    assert code == 0
    assert "phantom_003_000" in stdout and "spleen" in stdout and "dataset is valid" in stdout
    ds = open_msd(out)
    assert len(ds) == 2 and ds.resolve_label(organ="spleen") == 1


def test_train_val_split_is_deterministic_and_paper_sized(tmp_path):
    root = tmp_path / "Task09_Spleen"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for n in range(41):
        for sub in ("imagesTr", "labelsTr"):
            (root / sub / f"spleen_{n}.nii.gz").write_bytes(b"x")
        training.append({"image": f"./imagesTr/spleen_{n}.nii.gz", "label": f"./labelsTr/spleen_{n}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "spleen"}, "training": training}))
    ds = open_dataset("msd_spleen", data_root=tmp_path)
    train, val = train_val_split(ds)
    assert (len(train), len(val)) == (32, 9)
    assert [c.name for c in val] == [c.name for c in train_val_split(ds)[1]]
    assert not {c.name for c in train} & {c.name for c in val}
    # folds of one seed: fold 0 is the split above, together they validate on every case once
    assert [c.name for c in train_val_split(ds, fold=0)[1]] == [c.name for c in val]
    folds = [train_val_split(ds, fold=k) for k in range(5)]
    assert [len(v) for _, v in folds] == [9, 9, 9, 9, 5]
    assert sorted(c.name for _, v in folds for c in v) == sorted(c.name for c in ds.cases)
    for train_k, val_k in folds:
        assert len(train_k) + len(val_k) == 41 and not {c.name for c in train_k} & {c.name for c in val_k}
    for bad in (5, -1):
        with pytest.raises(InputError, match=f"fold {bad} does not exist.*folds 0-4"):
            train_val_split(ds, fold=bad)


def test_msd_spleen_missing_says_where_to_get_it(tmp_path, cli):
    code, _, err = cli("data", "info", "--data", "msd_spleen", "--data-root", tmp_path)
    assert code == 1
    assert "Task09_Spleen" in err and "medicaldecathlon" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cache_round_trip_and_untrusted_entries(tmp_path):
    cache = ArrayCache(tmp_path / "c")
    cache.put("case_1", {"crop": np.arange(10.0)}, {"note": "x"})
    arrays, attrs = cache.get("case_1")
    np.testing.assert_array_equal(arrays["crop"], np.arange(10.0))
    assert attrs["note"] == "x"
    # a half-written file under the final name is not served
    (tmp_path / "c" / "case_2.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    assert cache.get("case_2") is None
    # another schema version is not served
    assert ArrayCache(tmp_path / "c", schema=999).get("case_1") is None
    # a truncated entry is not served
    data = (tmp_path / "c" / "case_1.h5").read_bytes()
    (tmp_path / "c" / "case_3.h5").write_bytes(data[: len(data) // 2])
    assert cache.get("case_3") is None


def _copy_shared(shared_data, tmp_path, name="mr_abdomen"):
    dst = tmp_path / name
    shutil.copytree(shared_data / name, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    dst.chmod(0o755)
    return dst


def _break_truncated(root):
    img = root / "imagesTr" / "ts_mr_001.nii.gz"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 3])


def _break_corrupt(root):
    img = root / "imagesTr" / "ts_mr_001.nii.gz"
    img.write_bytes(gzip.compress(b"this is not a nifti header at all" * 20))


def _break_json(root):
    (root / "dataset.json").write_text('{"labels": {"0": "background",')


def _break_missing_file(root):
    (root / "labelsTr" / "ts_mr_001.nii.gz").unlink()


def _break_2d(root):
    save_nifti(root / "imagesTr" / "ts_mr_001.nii.gz", np.zeros((5, 5, 1)), np.eye(4))
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((5, 5), np.float32), np.eye(4)), str(root / "imagesTr" / "ts_mr_001.nii.gz"))


def _break_4d(root):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 2), np.float32), np.eye(4)), str(root / "imagesTr" / "ts_mr_001.nii.gz"))


def _break_shape(root):
    save_nifti(root / "labelsTr" / "ts_mr_001.nii.gz", np.zeros((117, 91, 19), np.uint8), np.eye(4))


def _break_empty(root):
    (root / "imagesTr" / "ts_mr_001.nii.gz").write_bytes(b"")


BREAKERS = {
    "truncated nifti": (_break_truncated, "truncated or corrupt"),
    "corrupt nifti": (_break_corrupt, "truncated or corrupt"),
    "broken json": (_break_json, "broken JSON"),
    "missing file": (_break_missing_file, "missing file"),
    "2d image": (_break_2d, "expected a 3D image"),
    "4d image": (_break_4d, "expected a 3D image"),
    "label shape": (_break_shape, "differs from its image"),
    "empty file": (_break_empty, "empty"),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_bad_dataset_gives_one_line_error(shared_data, tmp_path, cli, case):
    root = _copy_shared(shared_data, tmp_path)
    breaker, expected = BREAKERS[case]
    breaker(root)
    code, _, err = cli("data", "info", "--data", root)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0] and "Traceback" not in err
    assert str(root) in lines[0]


def test_missing_folder(cli, tmp_path):
    code, _, err = cli("data", "info", "--data", tmp_path / "nope")
    assert code == 1 and "not found" in err and len(err.strip().splitlines()) == 1


def test_organ_and_label_resolution_errors(shared_data):
    ds = open_msd(shared_data / "mr_abdomen")
    with pytest.raises(InputError, match="not in"):
        ds.resolve_label(label=250)
    with pytest.raises(InputError, match="known"):
        ds.resolve_label(organ="heart")
    with pytest.raises(InputError, match="either"):
        ds.resolve_label(label=1, organ="spleen")


def test_cli_version_and_env(cli):
    code, out, _ = cli("--version")
    assert code == 0 and "extremefast" in out
    code, out, _ = cli("env")
    assert code == 0 and "numba" in out and "point-loss backends" in out


def test_debug_shows_traceback(tmp_path):
    from extremefast.cli.main import main

    with pytest.raises(DataError):
        main(["--debug", "data", "info", "--data", str(tmp_path / "nope")])
