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


def test_cpu_share_counts_other_processes_not_its_own(monkeypatch):
    for name in (threads.THREADS_ENV, "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    clock = {"wall": 0.0, "idle": 0.0, "total": 0.0, "own": 0.0}
    monkeypatch.setattr(threads, "_cpu_times", lambda: (clock["idle"], clock["total"]))
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(threads.os, "times", lambda: threads.os.times_result((clock["own"], 0, 0, 0, 0)))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0: 2.0)
    applied = []
    monkeypatch.setattr(threads, "use_threads", applied.append)
    ticks = threads.os.sysconf("SC_CLK_TCK")
    share = threads.CpuShare(limit=2)
    assert share.adapt() == 2  # first call: the idle cores

    def elapse(seconds, own_cores, other_cores):
        clock["wall"] += seconds
        clock["own"] += seconds * own_cores
        busy = seconds * (own_cores + other_cores)
        clock["total"] += 2 * seconds * ticks
        clock["idle"] += (2 * seconds - busy) * ticks

    elapse(10, own_cores=2.0, other_cores=0.0)  # alone on both cores: stays at 2
    assert share.adapt() == 2
    elapse(10, own_cores=1.5, other_cores=0.5)  # half a core of noise: no change
    assert share.adapt() == 2
    elapse(10, own_cores=1.3, other_cores=0.7)  # a neighbour took a core's share: 1 thread
    assert share.adapt() == 1
    elapse(10, own_cores=1.0, other_cores=1.0)  # still there
    assert share.adapt() == 1
    elapse(10, own_cores=1.0, other_cores=0.5)  # half a core: stays at 1
    assert share.adapt() == 1
    elapse(10, own_cores=1.0, other_cores=0.05)  # gone again
    assert share.adapt() == 2
    assert applied == [2, 1, 2]


def test_cpu_share_sees_a_real_busy_process():
    if threads._cpu_times() is None:
        pytest.skip("this OS gives no CPU times")
    share = threads.CpuShare()
    share.others_busy()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    busy.wait()
    others = share.others_busy()
    assert others is not None and others >= 0.3  # 1.5 s of one busy core over the interval


def test_env_reports_threads():
    from extremefast.environment import environment_report

    report = environment_report()
    assert {"CPU cores usable", "CPU threads", "OpenMP wait policy"} <= set(report)
