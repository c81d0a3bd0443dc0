"""extremefast.pseudo.runner through ``extremefast pseudo-label``: resume, report, one-line errors."""
from __future__ import annotations

import json

import pytest



def test_pseudo_label_cli_resumes_and_reports(small_synthetic, tmp_path, cli):
    out = tmp_path / "pl"
    code, stdout, err = cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", out,
                            "--crop-size", 48, "--workers", 1)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cases"]) == 3 and 0 < summary["dice"]["mean"] <= 1
    assert set(summary["dice"]) >= {"mean", "std", "median"}
    for c in summary["cases"]:
        assert (out / f"{c['case']}.nii.gz").exists() and (out / f"{c['case']}.png").exists()
    assert "mean±std" in stdout
    # a rerun after losing one case redoes only that case, with the same answer
    first = (out / f"{summary['cases'][0]['case']}.nii.gz").read_bytes()
    (out / f"{summary['cases'][0]['case']}.json").unlink()
    mtime = (out / f"{summary['cases'][1]['case']}.json").stat().st_mtime_ns
    code, _, _ = cli("pseudo-label", "--data", small_synthetic, "--label", 1, "--out", out, "--crop-size", 48,
                     "--workers", 1)
    assert code == 0
    assert (out / f"{summary['cases'][1]['case']}.json").stat().st_mtime_ns == mtime
    again = json.loads((out / "summary.json").read_text())
    assert again["cases"][0]["dice"] == pytest.approx(summary["cases"][0]["dice"])
    import nibabel as nib

    a = nib.load(str(out / f"{summary['cases'][0]['case']}.nii.gz"))
    assert a.shape == nib.load(str(small_synthetic / "imagesTr" / f"{summary['cases'][0]['case']}.nii.gz")).shape
    assert len(first) > 0


def test_pseudo_label_cli_bad_label(small_synthetic, tmp_path, cli):
    code, _, err = cli("pseudo-label", "--data", small_synthetic, "--label", 42, "--out", tmp_path / "x")
    assert code == 1 and "label 42" in err and len(err.strip().splitlines()) == 1
