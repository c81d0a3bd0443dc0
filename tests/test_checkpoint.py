"""Checkpoints hold data only: a file that asks to run code is refused before anything of it
runs, wherever a checkpoint is read (predict, annotate, the resume of a run); an older
checkpoint converts with one command and predicts the same afterwards."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from extremefast.cli.main import main
from extremefast.errors import DataError
from extremefast.model import TrainConfig, convert_checkpoint, load_checkpoint, save_checkpoint

from test_train import TINY


class _Payload:
    """Unpickling this runs ``touch SENTINEL`` (what a tampered model.pt can do to an unprotected loader)."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.system, (f"touch '{self.sentinel}'",)


def _malicious(path, sentinel, *, legacy: bool = False):
    payload = {"format": 2, "version": "0.1.0", "config": {}, "model": _Payload(sentinel)}
    if legacy:  # a plain pickle, not torch's zip container
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    return path


@pytest.fixture(params=["zip", "legacy"])
def evil(request, tmp_path):
    sentinel = tmp_path / "code_ran"
    path = _malicious(tmp_path / "evil.pt", sentinel, legacy=request.param == "legacy")
    return path, sentinel


def test_the_payload_is_live_for_an_unprotected_loader(tmp_path):
    # so that the refusals below mean something: pickle itself runs the command
    sentinel = tmp_path / "code_ran"
    path = _malicious(tmp_path / "evil.pt", sentinel, legacy=True)
    pickle.loads(path.read_bytes())
    assert sentinel.exists()


def test_load_checkpoint_refuses_code(evil):
    path, sentinel = evil
    with pytest.raises(DataError, match="refused: the file (asks to run .*system|holds pickle instructions)"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_predict_refuses_code_in_one_line(evil, small_synthetic, tmp_path, capsys):
    path, sentinel = evil
    image = next((small_synthetic / "imagesTr").glob("*.nii.gz"))
    pts = tmp_path / "pts.json"
    assert main(["points", "--labels", str(small_synthetic / "labelsTr" / image.name), "--label", "1",
                 "--out", str(pts)]) == 0
    capsys.readouterr()
    code = main(["predict", "--checkpoint", str(path), "--image", str(image), "--points", str(pts),
                 "--out", str(tmp_path / "mask.nii.gz")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "refused" in err and "nothing in the file was run" in err
    assert not sentinel.exists() and not (tmp_path / "mask.nii.gz").exists()


def test_annotate_refuses_code(evil):
    from extremefast import annotate

    path, sentinel = evil
    image = np.zeros((20, 20, 10), np.float32)
    points = np.array([[2, 10, 5], [17, 10, 5], [10, 2, 5], [10, 17, 5], [10, 10, 1], [10, 10, 8]])
    with pytest.raises(DataError, match="refused"):
        annotate(image, points, path, spacing=(1.0, 1.0, 1.0))
    assert not sentinel.exists()


def test_resume_refuses_code_and_keeps_the_state_file(evil, small_synthetic, tmp_path):
    from extremefast.train.run import train

    path, sentinel = evil
    out = tmp_path / "run"
    out.mkdir()
    state = out / "state.pt"
    state.write_bytes(path.read_bytes())
    before = state.read_bytes()
    with pytest.raises(DataError, match="refused"):
        train(str(small_synthetic), 1, None, out, TrainConfig(**dict(TINY, rounds=1)), device="cpu", resume=True,
              log=lambda *_: None)
    assert not sentinel.exists()
    assert state.read_bytes() == before


def test_an_older_checkpoint_is_refused_then_converts_to_the_same_weights(tmp_path, capsys):
    from extremefast.model import build_model

    config = TrainConfig(**TINY)
    weights = build_model(config).state_dict()
    old = tmp_path / "old.pt"
    # format 1 as it was written: the same payload under the format number 1
    torch.save({"format": 1, "version": "0.1.0", "config": config.to_dict(), "model": weights, "best_round": 1,
                "rows": [{"round": 0, "dice": np.float64(0.5)}]}, old)
    with pytest.raises(DataError, match="convert-checkpoint"):
        load_checkpoint(old)
    assert main(["convert-checkpoint", str(old), str(tmp_path / "new.pt")]) == 0
    new = load_checkpoint(tmp_path / "new.pt")
    assert new["format"] == 2 and new["converted_from"] == {"format": 1, "version": "0.1.0"}
    assert new["best_round"] == 1 and new["rows"] == [{"round": 0, "dice": 0.5}]
    assert set(new["model"]) == set(weights)
    assert all(torch.equal(new["model"][k], weights[k]) for k in weights)
    capsys.readouterr()
    assert main(["convert-checkpoint", str(tmp_path / "new.pt"), str(tmp_path / "again.pt")]) == 1
    assert "already in the current" in capsys.readouterr().err


def test_the_writer_keeps_checkpoints_to_data(tmp_path):
    config = TrainConfig(**TINY)
    path = save_checkpoint(tmp_path / "m.pt", config, {"w": torch.ones(2)}, rows=[{"dice": np.float32(0.25)}],
                           shape=np.array([1, 2]))
    ckpt = load_checkpoint(path)
    assert ckpt["rows"] == [{"dice": 0.25}] and ckpt["shape"] == [1, 2]
    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint(tmp_path / "x.pt", config, {"w": torch.ones(2)}, extra=object())
    assert not (tmp_path / "x.pt").exists() and not list(tmp_path.glob(".x*"))
