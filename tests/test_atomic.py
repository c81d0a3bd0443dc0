"""One atomic-write helper for every writer: old content or new, never half; no temporary
file left behind; two writers of one file never share a temporary name."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from extremefast.atomic import atomic_folder, atomic_write, temporary_name, write_text
from extremefast.data.points import write_points
from extremefast.errors import DataError


def test_temporary_names_are_unique_and_keep_the_suffix(tmp_path):
    names = {temporary_name(tmp_path / "STS_002.nii.gz") for _ in range(100)}
    assert len(names) == 100
    assert all(n.name.startswith(".STS_002.") and n.name.endswith(".tmp.nii.gz") for n in names)
    assert temporary_name(tmp_path / "c.seg.nrrd").name.endswith(".tmp.seg.nrrd")
    assert temporary_name(tmp_path / "c.mrk.json").name.endswith(".tmp.mrk.json")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_file_system_error_is_one_line_naming_the_target(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(DataError, match=r"blocker/x.json: could not write"):
        write_text(tmp_path / "blocker" / "x.json", "{}")


def test_two_writers_of_one_points_file_do_not_collide(tmp_path):
    # the server writes CASE.mrk.json from several request threads; a shared temporary name
    # made one writer rename the other's file away (FileNotFoundError) or publish its half
    path = tmp_path / "case.mrk.json"
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    errors = []

    def writer(offset):
        pts = np.array([[1, 5, 5], [9, 5, 5], [5, 1, 5], [5, 9, 5], [5, 5, 1], [5, 5, 9]]) + offset
        for _ in range(40):
            try:
                write_points(path, pts, affine, "RAS", slicer=True)
            except Exception as exc:  # noqa: BLE001 - any failure of a writer is the finding
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    doc = json.loads(path.read_text())
    assert len(doc["markups"][0]["controlPoints"]) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["case.mrk.json"]


def test_sigkill_during_a_write_leaves_the_old_file(tmp_path):
    target = write_text(tmp_path / "mask.bin", "old")
    script = (f"from extremefast.atomic import atomic_write\n"
              f"import os, signal\n"
              f"with atomic_write({str(target)!r}) as tmp:\n"
              f"    open(tmp, 'wb').write(b'x' * 100000)\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    assert target.read_text() == "old"  # the stray temporary file is hidden and never the target


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "ds") as tmp:
            (tmp / "imagesTr").mkdir()
            raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(tmp_path / "ds") as tmp:
        (tmp / "dataset.json").write_text("{}")
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["dataset.json"]
