"""Thread counts on a shared CPU (extremefast.threads)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from extremefast import threads


def test_idle_cores_is_within_the_machine():
    idle = threads.idle_cores(0.1)
    if idle is None:
        pytest.skip("this OS gives no CPU times")
    assert 0.0 <= idle <= threads.os.cpu_count() + 1e-6


def test_fixed_count_wins_over_sampling(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.choose_threads() == (3, f"set by {threads.THREADS_ENV}")
    monkeypatch.delenv(threads.THREADS_ENV)
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0: 0.2)
    assert threads.choose_threads(limit=4)[0] == 1  # a busy machine still gets one thread
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0: 3.6)
    assert threads.choose_threads(limit=2)[0] == 2  # never above the limit
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0: None)
    assert threads.choose_threads(limit=2) == (2, "all cores (idle cores unknown on this OS)")


def test_use_threads_sets_torch_and_numba():
    torch = pytest.importorskip("torch")
    numba = pytest.importorskip("numba")
    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        threads.use_threads(1)
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_command_line_makes_openmp_wait_passively_unless_told_otherwise():
    env = {k: v for k, v in threads.os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["COLUMNS"] = "200"
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env if given is None else dict(env, OMP_WAIT_POLICY=given)
        out = subprocess.run([sys.executable, "-m", "extremefast", "env"], env=run_env, capture_output=True,
                             text=True, encoding="utf-8", check=True)
        line = next(l for l in out.stdout.splitlines() if "OpenMP wait policy" in l)
        assert line.split(":", 1)[1].strip() == expected


def test_env_reports_threads():
    from extremefast.environment import environment_report

    report = environment_report()
    assert {"CPU cores usable", "CPU threads", "OpenMP wait policy"} <= set(report)
