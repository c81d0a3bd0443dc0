"""The iterative scheme end to end on small phantoms: outputs, variants, resume, DDP."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from extremefast.errors import DataError, InputError
from extremefast.model import TrainConfig
from extremefast.train.run import train
from extremefast.model import load_checkpoint

from conftest import SMALL_PHANTOM_SHAPE, SMALL_PHANTOM_SPACING

TINY = dict(rounds=2, patience=5, epochs_per_round=2, steps_per_epoch=3, batch_size=2, crop_size=32,
            rw_crop_size=48, point_loss_filters=6, point_sigma=1.5, amp=False)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from extremefast.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("train") / "ds"
    return write_synthetic_dataset(out, cases=6, seed=9, shape=SMALL_PHANTOM_SHAPE, spacing=SMALL_PHANTOM_SPACING)


def _rows(summary):
    return [{k: v for k, v in r.items() if k not in ("seconds", "refresh_seconds")} for r in summary["rounds"]]


@pytest.mark.parametrize("variant", ["a", "b", "e", "f", "full"])
def test_variant_runs_and_writes_outputs(phantoms, tmp_path, variant):
    out = tmp_path / variant
    summary = train(str(phantoms), None, "spleen", out, TrainConfig(variant=variant, **TINY), device="cpu", log=lambda *_: None)
    assert summary["variant"] == variant
    assert summary["rounds"][0]["round"] == 0
    for row in summary["rounds"]:
        for key in ("pseudo_label_dice", "val_dice"):
            assert set(row[key]) >= {"mean", "std", "median"}
            assert 0 <= row[key]["mean"] <= 1
    assert len(summary["rounds"]) == (2 if variant == "full" else 3)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["best_round"] == summary["best_round"] >= 1
    assert (out / "dice_per_round.png").exists() and list((out / "overlays").glob("*.png"))
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["config"]["variant"] == variant and ckpt["crop_size"] == 32


@pytest.mark.parametrize("variant, expected", [("c", {1: 3, 2: 2}), ("full", {1: 5})])
def test_first_round_trains_its_own_epochs(phantoms, tmp_path, variant, expected):
    # full supervision gets the epochs every round of a weak variant would have, in one go
    epochs = {}
    cfg = TrainConfig(variant=variant, **dict(TINY, first_round_epochs=3))
    train(str(phantoms), 1, None, tmp_path / variant, cfg, device="cpu", log=lambda *_: None,
          progress=lambda rnd, epoch, loss, score: epochs.__setitem__(rnd, epoch))
    assert epochs == expected
    with pytest.raises(InputError):
        TrainConfig(first_round_epochs=0)


def test_same_seed_gives_same_curve(phantoms, tmp_path):
    cfg = TrainConfig(variant="c", **TINY)
    a = train(str(phantoms), 1, None, tmp_path / "a", cfg, device="cpu", log=lambda *_: None)
    b = train(str(phantoms), 1, None, tmp_path / "b", cfg, device="cpu", log=lambda *_: None)
    assert _rows(a) == _rows(b)


_SCRIPT = """
import sys
from extremefast.model import TrainConfig
from extremefast.train.run import train
cfg = TrainConfig(variant="d", **{tiny})
train(sys.argv[1], None, "spleen", sys.argv[2], cfg, device="cpu", resume=True, log=lambda *_: None)
"""


@pytest.mark.parametrize("moment", [(1, 1), (2, 1)])  # (round, epoch) under way at the kill
def test_killed_run_resumes_with_identical_finished_rounds(phantoms, tmp_path, moment):
    tiny = dict(TINY, rounds=3)
    cfg = TrainConfig(variant="d", **tiny)
    ref = train(str(phantoms), None, "spleen", tmp_path / "ref", cfg, device="cpu", log=lambda *_: None)
    out = tmp_path / "killed"
    script = _SCRIPT.format(tiny=repr(tiny))
    proc = subprocess.Popen([sys.executable, "-c", script, str(phantoms), str(out)])
    state = out / "state.pt"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                s = torch.load(state, weights_only=False)["state"]
            except Exception:
                s = None
            if s and (s["round"], s["epoch"]) >= moment:
                proc.send_signal(signal.SIGKILL)
                killed_at = (s["round"], s["epoch"])
                break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    resumed = train(str(phantoms), None, "spleen", out, cfg, device="cpu", resume=True, log=lambda *_: None)
    finished = killed_at[0]  # rounds < this one had finished before the kill
    assert _rows(resumed)[:finished] == _rows(ref)[:finished]
    assert len(resumed["rounds"]) == len(ref["rounds"])


def test_resume_with_another_crop_margin_is_refused(phantoms, tmp_path):
    # a run started with the fixed 20 mm margin (as every run before pad_fraction) must not go on
    # learning from crops of another margin; the refusal leaves its state as it was
    out = tmp_path / "run"
    train(str(phantoms), None, "spleen", out, TrainConfig(variant="c", **dict(TINY, rounds=1)), device="cpu",
          log=lambda *_: None)
    before = (out / "state.pt").read_bytes()
    other = TrainConfig(variant="c", pad_fraction=0.2, **dict(TINY, rounds=2))
    with pytest.raises(InputError, match="pad_fraction None there, 0.2 now.*--pad-fraction 0"):
        train(str(phantoms), None, "spleen", out, other, device="cpu", resume=True, log=lambda *_: None)
    assert (out / "state.pt").read_bytes() == before
    resumed = train(str(phantoms), None, "spleen", out, TrainConfig(variant="c", **dict(TINY, rounds=2)), device="cpu",
                    resume=True, log=lambda *_: None)
    assert len(resumed["rounds"]) == 3


def test_fold_validates_on_other_cases_and_a_resume_must_keep_it(phantoms, tmp_path):
    # --fold moves the validation block; a run cannot be resumed on another fold's cases
    out = tmp_path / "run"
    first = train(str(phantoms), None, "spleen", out, TrainConfig(variant="c", fold=1, **dict(TINY, rounds=1)),
                  device="cpu", log=lambda *_: None)
    assert first["config"]["fold"] == 1
    before = (out / "state.pt").read_bytes()
    with pytest.raises(InputError, match="fold 1 there, 0 now"):
        train(str(phantoms), None, "spleen", out, TrainConfig(variant="c", **dict(TINY, rounds=2)), device="cpu",
              resume=True, log=lambda *_: None)
    assert (out / "state.pt").read_bytes() == before
    fold0 = train(str(phantoms), None, "spleen", tmp_path / "fold0", TrainConfig(variant="c", **dict(TINY, rounds=1)),
                  device="cpu", log=lambda *_: None)
    assert not set(fold0["val_cases"]) & set(first["val_cases"])
    assert set(fold0["val_cases"]) <= set(first["train_cases"])


def test_two_process_gloo_run_matches_one_process(phantoms, tmp_path):
    code = f"""
from extremefast.model import TrainConfig
from extremefast.train.run import train_distributed
cfg = TrainConfig(variant="f", **{TINY!r})
train_distributed(2, data={str(phantoms)!r}, label=None, organ="spleen", out={str(tmp_path / 'ddp')!r}, config=cfg,
                  device="cpu", log=lambda *_: None)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    one = train(str(phantoms), None, "spleen", tmp_path / "one", TrainConfig(variant="f", **TINY), device="cpu",
                log=lambda *_: None)
    assert len(ddp["rounds"]) == len(one["rounds"])
    assert ddp["rounds"][0] == {**one["rounds"][0], "seconds": ddp["rounds"][0]["seconds"]}  # same init
    assert abs(ddp["final_val_dice"]["mean"] - one["final_val_dice"]["mean"]) < 0.2


def test_bad_training_inputs(phantoms, tmp_path):
    with pytest.raises(InputError, match="variant"):
        TrainConfig(variant="z")
    with pytest.raises(InputError, match="label"):
        train(str(phantoms), 99, None, tmp_path / "x", TrainConfig(**TINY), device="cpu")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="in the way"):
        train(str(phantoms), 1, None, tmp_path / "file", TrainConfig(**TINY), device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="not a readable"):
        load_checkpoint(bad)
    torch.save({"format": 999, "version": "9.9", "config": {}}, tmp_path / "future.pt")
    with pytest.raises(DataError, match="incompatible"):
        load_checkpoint(tmp_path / "future.pt")


def test_a_round_must_gain_min_gain_to_be_kept(phantoms, tmp_path):
    # with a gain no round can reach, round 1 stays the kept one and patience 1 stops after round 2
    cfg = TrainConfig(variant="c", **dict(TINY, rounds=4, patience=1, min_gain=1.0))
    summary = train(str(phantoms), None, "spleen", tmp_path / "g", cfg, device="cpu", log=lambda *_: None)
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["best_round"] == 1
    # and with no minimum the same rounds keep whichever validated best
    free = train(str(phantoms), None, "spleen", tmp_path / "f", cfg.with_(min_gain=0.0, rounds=2, patience=5),
                 device="cpu", log=lambda *_: None)
    vals = [r["val_dice"]["mean"] for r in free["rounds"][1:]]
    assert free["best_round"] == 1 + vals.index(max(vals))


def _rewrite_case(folder: Path, name: str, edit):
    """Apply ``edit(image, label, affine) -> (image, label, affine)`` to one phantom case."""
    import nibabel as nib
    import numpy as np

    img_path, lab_path = folder / "imagesTr" / f"{name}.nii.gz", folder / "labelsTr" / f"{name}.nii.gz"
    img, lab = nib.load(img_path), nib.load(lab_path)
    image, label, affine = edit(np.asarray(img.dataobj), np.asarray(lab.dataobj), img.affine.copy())
    nib.save(nib.Nifti1Image(image, affine), img_path)
    nib.save(nib.Nifti1Image(label, affine), lab_path)


def test_awkward_cases_get_a_reason_or_a_note_not_a_crash(phantoms, tmp_path):
    import shutil

    import numpy as np

    data = tmp_path / "awkward"
    shutil.copytree(phantoms, data)
    names = sorted(p.name[: -len(".nii.gz")] for p in (data / "imagesTr").glob("*.nii.gz"))

    def one_voxel(image, label, affine):  # the spleen shrunk to one voxel
        spot = np.argwhere(label == 1)[0]
        label = np.where(label == 1, 0, label).astype(label.dtype)
        label[tuple(spot)] = 1
        return image, label, affine

    def cut_at_spleen(image, label, affine):  # the scan ends in the middle of the spleen
        rows = np.where((label == 1).any(axis=(1, 2)))[0]
        mid = (rows[0] + rows[-1]) // 2
        return image[mid:], label[mid:], affine

    def thick_slices(image, label, affine):  # 4 times thicker slices on the last axis
        affine[:3, 2] *= 4
        return image[:, :, ::4], label[:, :, ::4], affine

    for name, edit in zip(names, (one_voxel, cut_at_spleen, thick_slices)):
        _rewrite_case(data, name, edit)
    lines = []
    summary = train(str(data), None, "spleen", tmp_path / "out", TrainConfig(variant="c", **dict(TINY, rounds=1)),
                    device="cpu", log=lines.append)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(on_disk["skipped_cases"]) == {names[0]}
    assert "one voxel across axis" in on_disk["skipped_cases"][names[0]]
    assert any("border" in n for n in on_disk["case_notes"][names[1]])
    assert any("longer on one axis" in n for n in on_disk["case_notes"][names[2]])
    assert any(l.startswith(f"{names[0]}: left out:") for l in lines)
    assert summary["best_round"] == 1


def test_round_zero_equals_the_pseudo_label_of_the_scan(shared_data, tmp_path):
    # training's round 0 crops the scan's own intensities before windowing, as pseudo-label does
    import numpy as np

    from extremefast.data import open_msd
    from extremefast.data.cache import ArrayCache
    from extremefast.pseudo import get_preset, pseudo_label_from_points
    from extremefast.train.cases import load_cases
    from extremefast.train.refresh import initial_pseudo_labels
    from extremefast.train.scheme import Runtime

    ds = open_msd(shared_data / "ct_headneck")
    cfg = TrainConfig(variant="f")
    cases = load_cases(ds, ds.cases[1:2], 7, cfg.window)
    direct = pseudo_label_from_points(cases[0].raw, cases[0].spacing, cases[0].points, get_preset(cfg.pseudo_preset))
    initial_pseudo_labels(cases, cfg, ArrayCache(tmp_path / "cache"), Runtime(torch.device("cpu"), log=lambda *_: None))
    assert np.array_equal(cases[0].pseudo, direct.in_image_space())
    assert cases[0].raw is None  # freed once round 0 is made


@pytest.mark.parametrize("pad_fraction", [None, 0.3])
def test_validation_with_the_walker_is_what_predict_with_walker_gives(phantoms, tmp_path, pad_fraction):
    # the run's "with the walker" column must be the Dice a user gets from `predict --with-walker`
    # on the same validation scans and clicks (the mask's extreme points, as training uses);
    # with either crop margin, prediction must crop as training did
    import numpy as np

    from extremefast.data import open_msd
    from extremefast.metrics import dice
    from extremefast.predict import Predictor
    from extremefast.train.cases import load_cases

    out = tmp_path / "f"
    summary = train(str(phantoms), None, "spleen", out, TrainConfig(variant="f", pad_fraction=pad_fraction, **TINY),
                    device="cpu", log=lambda *_: None)
    for row in summary["rounds"][1:]:
        assert row["val_dice_with_walker"]["n"] == row["val_dice"]["n"] > 0
    ds = open_msd(phantoms)
    value = ds.organ_label(None, "spleen", clicks_given=False)
    predictor = Predictor.from_checkpoint(out / "model.pt")
    assert predictor.config.pad_fraction == pad_fraction
    cases = load_cases(ds, [c for c in ds.cases if c.name in summary["val_cases"]], value, predictor.config.window)
    alone, with_walker = [], []
    for case in cases:
        alone.append(dice(predictor.predict(case.raw, case.points, spacing=case.spacing), case.mask))
        with_walker.append(dice(predictor.predict(case.raw, case.points, spacing=case.spacing, with_walker=True),
                                case.mask))
    assert np.mean(alone) == pytest.approx(summary["final_val_dice"]["mean"], abs=1e-6)
    assert np.mean(with_walker) == pytest.approx(summary["final_val_dice_with_walker"]["mean"], abs=1e-6)


def test_pad_fraction_makes_the_crop_the_same_for_a_small_and_a_large_organ():
    # with pad_fraction an organ twice the size gets twice the margin, so that its clicks fall on
    # the same crop voxels; the fixed margin (the paper's 20 mm) gives the small organ more context
    import numpy as np

    from extremefast.pseudo.roi import roi_box

    small = np.array([[40, 50, 50], [60, 50, 50], [50, 40, 50], [50, 60, 50], [50, 50, 44], [50, 50, 56]])
    large = 50 + 2 * (small - 50)
    spacing, shape = (1.0, 1.0, 2.0), (200, 200, 200)

    def crop_positions(config, points):
        box = roi_box(points, spacing, shape, config.crop_margin_mm(points, spacing), (48,) * 3)
        scale = np.asarray(box.size) / (np.asarray(box.stop) - np.asarray(box.start))
        return (points - np.asarray(box.start)) * scale

    proportional = TrainConfig(pad_fraction=0.25)
    assert proportional.crop_margin_mm(small, spacing) == pytest.approx(0.25 * np.mean([21, 21, 26]))
    assert np.allclose(crop_positions(proportional, small), crop_positions(proportional, large), atol=1.5)
    fixed = TrainConfig()
    assert fixed.crop_margin_mm(small, spacing) == fixed.crop_margin_mm(large, spacing) == 20.0
    assert not np.allclose(crop_positions(fixed, small), crop_positions(fixed, large), atol=3)
    for bad in (0, -0.1, 3):
        with pytest.raises(InputError, match="pad_fraction"):
            TrainConfig(pad_fraction=bad)
    assert TrainConfig.from_dict({"variant": "f"}).pad_fraction is None  # checkpoints from before keep 20 mm


def test_refresh_with_walker_averages_the_refreshed_label_and_round_zero(phantoms, tmp_path):
    # round 1 trains on the round-0 labels either way, so the same seed gives the same model and
    # the same refreshed labels; with the option each is averaged with the case's round-0 label
    import numpy as np

    from extremefast.data.cache import ArrayCache

    one_round = dict(TINY, rounds=1)
    runs = {}
    for flag in (False, True):
        out = tmp_path / str(flag)
        summary = train(str(phantoms), None, "spleen", out, TrainConfig(variant="c", refresh_with_walker=flag,
                                                                        **one_round),
                        device="cpu", log=lambda *_: None)
        runs[flag] = (ArrayCache(out / "cache"), summary)
    names = runs[False][1]["train_cases"]
    assert names
    for name in names:
        r0 = runs[False][0].get(f"r0_{name}")[0]["pseudo"]
        alone = runs[False][0].get(f"r1_{name}")[0]["pseudo"]
        averaged = runs[True][0].get(f"r1_{name}")[0]["pseudo"]
        np.testing.assert_allclose(averaged, 0.5 * (alone + r0), atol=1e-6)
    assert any(not np.allclose(runs[False][0].get(f"r1_{n}")[0]["pseudo"], runs[False][0].get(f"r0_{n}")[0]["pseudo"],
                               atol=0.05) for n in names)  # the refresh moved the labels, so the test can tell


def test_paper_refresh_switches_the_averaged_refresh_off(phantoms, tmp_path, cli):
    from extremefast.model import config_from_options

    assert config_from_options("f", device="cpu").refresh_with_walker is True
    code, out, err = cli("train", "--data", phantoms, "--organ", "spleen", "--out", tmp_path / "run", "--rounds", "1",
                         "--epochs", "1", "--crop-size", "32", "--batch-size", "2", "--device", "cpu", "--paper-refresh")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["refresh_with_walker"] is False
    assert "with the walker at prediction" in out


def test_pad_fraction_option_and_the_cpu_default():
    from extremefast.model import config_from_options

    defaults = config_from_options("f", device="cpu")
    assert defaults.pad_fraction == 0.2  # CPU sizes: the margin in proportion to the clicks' box
    assert config_from_options("f", device="cpu", pad_fraction=0.3).pad_fraction == 0.3
    assert config_from_options("f", device="cpu", pad_fraction=0.0).pad_fraction is None  # 0: the paper's 20 mm
    assert defaults.fold == 0 and config_from_options("f", device="cpu", fold=2).fold == 2
    assert config_from_options("f", device="cpu", rounds=None, crop_size=40).crop_size == 40
