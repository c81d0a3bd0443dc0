"""How the package is put together: what each kind of user installs and imports, and the entry points."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

HEAVY = ("torch", "matplotlib", "h5py", "typer", "rich", "nibabel", "SimpleITK", "pyamg")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", cwd=REPO,
                          timeout=300)


def test_random_walker_and_pseudo_labels_import_none_of_the_extras():
    """A pipeline that imports the drop-in random walker (or the pseudo labels on arrays) loads
    neither torch nor the command line's, plotting, cache or file-format libraries."""
    proc = _python(
        "import json, sys, numpy as np\n"
        "from extremefast import random_walker\n"
        "from extremefast.pseudo import pseudo_label_from_points, get_preset\n"
        "data = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)\n"
        "seeds = np.zeros(data.shape, np.int32); seeds[2, 2, 2] = 1; seeds[17, 17, 17] = 2\n"
        "random_walker(data, seeds, beta=90)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_prediction_does_not_import_the_trainer():
    for path in sorted((REPO / "extremefast" / "predict").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not (node.level and node.module.split(".")[0] == "train"), f"{path.name} imports {node.module}"
                assert not node.module.startswith("extremefast.train"), f"{path.name} imports {node.module}"
    proc = _python("import sys; import extremefast.predict; print(any(m.startswith('extremefast.train') "
                   "for m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_python_dash_m_runs_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "extremefast", "--help"], capture_output=True, text=True,
                          encoding="utf-8", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pseudo-label" in proc.stdout and "train" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("train", "--variant", "z", "--out", "x"), "'z' is not one of"),
    (("train", "--rounds", "0", "--out", "x"), "greater than or equal to 1"),
    (("train", "--device", "tpu", "--out", "x"), "'tpu' is not one of"),
    (("points", "--labels", "l.nii.gz", "--label", "1", "--out", "p.json", "--space", "xyz"), "'xyz' is not one of"),
])
def test_command_line_checks_choices_and_bounds(cli, args, message):
    code, out, err = cli(*args)
    assert code == 2 and message in " ".join((out + err).split())


@pytest.mark.slow
def test_wheel_ships_the_cuda_sources_and_the_command_line(tmp_path):
    """The wheel holds what first use needs: the CUDA sources the op compiles from, and the CLI."""
    # built from a copy of the tree, so that the build leaves nothing in the checkout
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True,
                            encoding="utf-8", cwd=REPO, check=True).stdout.split("\n")
    source = tmp_path / "source"
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(source)], capture_output=True, text=True, encoding="utf-8",
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("extremefast-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("extremefast/csrc/point_loss_kernels.cu", "extremefast/csrc/point_loss_op.cpp",
                   "extremefast/cli/main.py", "extremefast/__main__.py", "extremefast/model/checkpoint.py"):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "benchmarks/", "cli/")) for n in names)


PUBLIC_MODULES = ("extremefast", "extremefast.pseudo", "extremefast.data", "extremefast.predict", "extremefast.model",
                  "extremefast.losses", "extremefast.random_walk", "extremefast.imageio")


def test_every_exported_function_documents_its_parameters():
    """NumPy-style docstrings: a Parameters (or, without arguments, a Returns) section."""
    import importlib
    import inspect

    undocumented = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__ if hasattr(module, "__all__") else []:
            obj = getattr(module, attr)
            if not inspect.isfunction(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            wanted = "Parameters\n----------" if inspect.signature(obj).parameters else "Returns\n-------"
            if wanted not in doc and "Parameters\n----------" not in doc:
                undocumented.append(f"{name}.{attr}")
    assert not undocumented, undocumented


def test_point_channel_is_one_formula_for_numpy_and_torch():
    import numpy as np
    import torch

    from extremefast.model.network import point_channel_torch
    from extremefast.pseudo import point_channel

    pts = np.random.default_rng(3).uniform(0, 20, (6, 3))
    got = point_channel_torch(torch.tensor(pts, dtype=torch.float32), (24, 20, 16), 2.5).numpy()
    # the same operations in float32; the two libraries' exp may differ in the last bit
    np.testing.assert_allclose(got, point_channel(pts.astype(np.float32), (24, 20, 16), 2.5), rtol=1e-6, atol=1e-7)


def test_pseudo_label_resumes_unless_told_not_to(small_synthetic, tmp_path, cli):
    out = tmp_path / "pl"
    assert cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", out, "--workers", "1")[0] == 0
    record = next(p for p in sorted(out.glob("*.json")) if p.name != "summary.json")
    marker = record.stat().st_mtime_ns
    assert cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", out, "--workers", "1")[0] == 0
    assert record.stat().st_mtime_ns == marker  # kept
    assert cli("pseudo-label", "--data", small_synthetic, "--organ", "spleen", "--out", out, "--workers", "1",
               "--no-resume")[0] == 0
    assert record.stat().st_mtime_ns != marker  # made again
