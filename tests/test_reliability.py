"""Reliability: property-based tests, runs killed with SIGKILL, determinism, unwritable outputs."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from extremefast import random_walker
from extremefast.errors import DataError
from extremefast.nifti import load_nifti, save_nifti, voxel_spacing
from extremefast.predict import read_points, write_points
from extremefast.pseudo import extreme_points
from extremefast.data.points import arrange_clicks
from extremefast.pseudo.roi import Box, crop_resample, paste_back

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- property-based tests
@FAST
@given(arrays(np.bool_, st.tuples(*[st.integers(1, 9)] * 3)))
def test_extreme_points_property(mask):
    if not mask.any():
        return
    pts = extreme_points(mask)
    coords = np.argwhere(mask)
    for a in range(3):
        assert mask[tuple(pts[2 * a])] and mask[tuple(pts[2 * a + 1])]
        assert pts[2 * a, a] == coords[:, a].min() and pts[2 * a + 1, a] == coords[:, a].max()


@st.composite
def _boxes(draw):
    shape = tuple(draw(st.integers(4, 20)) for _ in range(3))
    start = tuple(draw(st.integers(0, s - 2)) for s in shape)
    stop = tuple(draw(st.integers(a + 1, s)) for a, s in zip(start, shape))
    return Box(start, stop, shape, tuple(stop[i] - start[i] for i in range(3)))


@FAST
@given(_boxes(), st.integers(0, 2**31 - 1))
def test_crop_then_paste_back_at_unit_zoom_is_exact(box, seed):
    """A crop the size of its box is the box's content, and pasting it back restores it."""
    vol = np.random.default_rng(seed).random(box.image_shape).astype(np.float32)
    inside = tuple(slice(a, b) for a, b in zip(box.start, box.stop))
    crop = crop_resample(vol, box, order=0)
    np.testing.assert_array_equal(crop, vol[inside])
    back = paste_back(crop, box, order=0)
    np.testing.assert_array_equal(back[inside], vol[inside])
    outside = np.ones(box.image_shape, bool)
    outside[inside] = False
    assert (back[outside] == 0).all()
    pts = np.random.default_rng(seed).uniform(0, np.asarray(box.size) - 1, (6, 3))
    np.testing.assert_allclose(box.to_crop(box.to_image(pts)), pts, atol=1e-9)


@st.composite
def _rw_problems(draw):
    shape = tuple(draw(st.integers(3, 8)) for _ in range(draw(st.sampled_from([2, 3]))))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape)
    labels = np.zeros(shape, dtype=np.int32)
    nlab = draw(st.integers(2, 3))
    flat = rng.choice(labels.size, size=nlab + draw(st.integers(0, 3)), replace=False)
    labels.flat[flat] = np.r_[np.arange(1, nlab + 1), rng.integers(1, nlab + 1, size=flat.size - nlab)]
    return data, labels, nlab


@FAST
@given(_rw_problems(), st.sampled_from(["auto", "rb", "cg_j", "bf"]))
def test_random_walker_properties(problem, mode):
    """Probabilities in [0, 1] (exactly for the direct solve; for the iterative one the
    range warning fires exactly when they leave [-prob_tol, 1 + prob_tol]), summing to 1; seeds respected; relabelling the seeds
    permutes the probabilities and nothing else."""
    data, labels, nlab = problem
    tol = 1e-8 if mode == "bf" else 1e-3  # the iterative solve is as exact as its tolerance
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prob = random_walker(data, labels, mode=mode, tol=1e-6, return_full_prob=True)
        seg = random_walker(data, labels, mode=mode, tol=1e-6)
    warned = any("outside [0, 1]" in str(w.message) for w in caught)
    assert prob.shape == (nlab,) + labels.shape
    assert warned == bool(prob.min() < -1e-3 or prob.max() > 1 + 1e-3)
    assert prob.min() >= -tol - 1e-3 * (mode != "bf") and prob.max() <= 1 + tol + 1e-3 * (mode != "bf") or warned
    # each label's column is its own solve (as scikit-image does on small problems): the sum is 1
    # exactly for the direct solve only; iterative columns leave voxels walled off by 1e-10
    # weights near their start, whatever the residual test says
    if mode == "bf":
        np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
    seeded = labels > 0
    np.testing.assert_array_equal(seg[seeded], labels[seeded])
    perm = np.random.default_rng(0).permutation(nlab) + 1
    relabelled = np.where(seeded, perm[np.maximum(labels, 1) - 1], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob2 = random_walker(data, relabelled, mode=mode, tol=1e-6, return_full_prob=True)
    for k in range(nlab):
        np.testing.assert_allclose(prob2[perm[k] - 1], prob[k], atol=max(tol, 1e-6))


@st.composite
def _affines(draw):
    angles = [draw(st.floats(-np.pi, np.pi)) for _ in range(3)]
    scale = [draw(st.floats(0.3, 5.0)) * draw(st.sampled_from([-1, 1])) for _ in range(3)]
    rot = np.eye(3)
    for ax, ang in enumerate(angles):
        c, s = np.cos(ang), np.sin(ang)
        i, j = [a for a in range(3) if a != ax]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rot = rot @ r
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(scale)
    affine[:3, 3] = [draw(st.floats(-500, 500)) for _ in range(3)]
    return affine


@FAST
@given(_affines(), st.lists(st.tuples(*[st.integers(0, 29)] * 3), min_size=6, max_size=6, unique=True),
       st.sampled_from([("voxel", False), ("RAS", False), ("LPS", False), ("RAS", True), ("LPS", True)]))
def test_points_parsing_round_trip_property(tmp_path_factory, affine, points, form):
    pts = np.array(points)  # six distinct points, so no pair can be one voxel twice
    space, slicer = form
    f = write_points(tmp_path_factory.mktemp("pts") / ("p.mrk.json" if slicer else "p.json"), pts, affine, space,
                     slicer=slicer)
    # the same points, paired by axis as any annotator's clicks are
    np.testing.assert_array_equal(read_points(f, affine, (30, 30, 30)), arrange_clicks(pts, voxel_spacing(affine)))


# ---------------------------------------------------------------- determinism
def test_pseudo_labels_are_bitwise_deterministic(small_synthetic, tmp_path, cli):
    for run in ("a", "b"):
        code, _, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", tmp_path / run,
                           "--crop-size", 48, "--workers", 1)
        assert code == 0, err
    for f in sorted((tmp_path / "a").glob("*.nii.gz")):
        a = load_nifti(f).array
        b = load_nifti(tmp_path / "b" / f.name).array
        assert a.tobytes() == b.tobytes(), f.name


# ---------------------------------------------------------------- killed runs
def _kill_when(proc, condition, timeout=240.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run did not reach the moment to kill it")


@pytest.mark.parametrize("after_cases", [0, 1])
def test_pseudo_label_killed_and_rerun_matches_uninterrupted(small_synthetic, tmp_path, cli, after_cases):
    args = ["pseudo-label", "--data", str(small_synthetic), "--organ", "spleen", "--crop-size", "48",
            "--workers", "1"]
    code, _, err = cli(*args, "--out", tmp_path / "clean")
    assert code == 0, err
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "extremefast", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _kill_when(proc, lambda: out.is_dir() and len(list(out.glob("*.json"))) >= after_cases
                        and (after_cases > 0 or any(out.iterdir())))
    assert killed, "the run finished before it could be killed"
    assert not (out / "summary.json").exists()
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    again = json.loads((out / "summary.json").read_text())
    assert [c["case"] for c in again["cases"]] == [c["case"] for c in clean["cases"]]
    assert [c["dice"] for c in again["cases"]] == [c["dice"] for c in clean["cases"]]
    for c in clean["cases"]:
        a = load_nifti(tmp_path / "clean" / f"{c['case']}.nii.gz").array
        b = load_nifti(out / f"{c['case']}.nii.gz").array
        assert a.tobytes() == b.tobytes()
    # a write the kill interrupted is left only under a hidden temporary name, never as a case
    assert all(p.name.startswith(".") for p in out.iterdir() if ".tmp" in p.name)


# ---------------------------------------------------------------- outputs that cannot be written
def test_full_disk_during_a_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.nii.gz"
    save_nifti(path, np.ones((4, 4, 4), np.uint8), np.eye(4))
    before = path.read_bytes()
    import nibabel as nib

    def full_disk(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", full_disk)
    with pytest.raises(DataError, match="No space left") as info:
        save_nifti(path, np.zeros((4, 4, 4), np.uint8), np.eye(4))
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz"]


def test_output_path_blocked_or_read_only(small_synthetic, tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, _, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", blocker)
    assert code == 1 and "in the way" in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "keep me"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes through permission bits: simulate the refusal
            import extremefast.nifti as nifti

            real_access = os.access
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(nifti.os, "access", lambda p, mode: False if Path(p) == ro / "x" else real_access(p, mode))
                code, _, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", ro / "x")
        else:
            code, _, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", ro / "x")
        assert code == 1 and ("not writable" in err or "cannot create" in err), err
        assert len(err.strip().splitlines()) == 1
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------- the command line's bad-input matrix
def _cli_cases(root: Path, data: Path):
    label = sorted((data / "labelsTr").glob("*.nii.gz"))[0]
    image = data / "imagesTr" / label.name
    empty = root / "empty.nii.gz"
    empty.write_bytes(b"")
    (root / "preds").mkdir(exist_ok=True)
    (root / "nopreds").mkdir(exist_ok=True)
    save_nifti(root / "preds" / "not_a_case.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    (root / "wrongshape").mkdir(exist_ok=True)
    save_nifti(root / "wrongshape" / f"{label.name}", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    return [
        (("train", "--data", root / "missing", "--out", root / "o1"), "not found"),
        (("train", "--data", data, "--label", 42, "--out", root / "o2"), "label 42 is not in"),
        (("ablation", "--data", data, "--label", 1, "--variants", "a,z", "--out", root / "o3"), "z"),
        (("pseudo-label", "--data", data, "--organ", "liverish", "--out", root / "o4"), "liverish"),
        (("evaluate", "--pred", root / "nopreds", "--data", data, "--label", 1), "no predictions"),
        (("evaluate", "--pred", root / "preds", "--data", data, "--label", 1), "not in the data set"),
        (("evaluate", "--pred", root / "wrongshape", "--data", data, "--label", 1), "shape"),
        (("evaluate", "--pred", root / "absent", "--data", data, "--label", 1), "not found"),
        (("points", "--labels", label, "--label", 99, "--out", root / "p.json"), "absent"),
        (("points", "--labels", empty, "--label", 1, "--out", root / "p.json"), "empty"),
        (("predict", "--checkpoint", root / "none.pt", "--image", image, "--points", root / "none.json",
          "--out", root / "m.nii.gz"), "not found"),
        (("data", "info", "--data", root / "missing"), "not found"),
    ]


def test_cli_bad_input_matrix(small_synthetic, tmp_path, cli):
    for args, message in _cli_cases(tmp_path, small_synthetic):
        code, _, err = cli(*args)
        assert code == 1, (args, err)
        assert message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
