"""Thread counts on a shared CPU (extremefast.threads)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from extremefast import threads


def test_free_cores_are_within_the_usable_cores():
    free = threads.free_cores(0.1)
    if free is None:
        pytest.skip("this OS gives no CPU times")
    assert 0.0 <= free <= threads.cpu_count() + 1e-6


def test_fixed_count_wins_over_sampling(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.choose_threads() == (3, f"set by {threads.THREADS_ENV}")
    monkeypatch.delenv(threads.THREADS_ENV)
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0: 0.2)
    assert threads.choose_threads(limit=4)[0] == 1  # a busy machine still gets one thread
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0: 3.6)
    assert threads.choose_threads(limit=2)[0] == 2  # never above the limit
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0: None)
    assert threads.choose_threads(limit=2) == (2, "all usable cores (the other processes' use is unknown on this OS)")


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


class _FakeMachine:
    """A machine of ``cores`` cores seen through a fake ``/proc/stat`` and a fake clock: each
    stretch of time says how busy every core was and how much of that was this process."""

    def __init__(self, monkeypatch, cores: int, mine: set[int]):
        self.tck = threads.os.sysconf("SC_CLK_TCK")
        self.wall, self.own, self.busy = 0.0, 0.0, [0.0] * cores
        for name in (threads.THREADS_ENV, "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(threads, "open", self._open, raising=False)
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.wall)
        monkeypatch.setattr(threads.time, "sleep", lambda s: self.elapse(s, {}))
        monkeypatch.setattr(threads.os, "times", lambda: threads.os.times_result((self.own, 0, 0, 0, 0)))
        monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(mine))
        self.applied = []
        monkeypatch.setattr(threads, "use_threads", self.applied.append)

    def elapse(self, seconds: float, busy: dict[int, float], own: float = 0.0):
        """``busy``: core -> the fraction of it in use (this process's ``own`` cores included)."""
        self.wall += seconds
        self.own += seconds * own
        for core, share in busy.items():
            self.busy[core] += seconds * share

    def _open(self, path, *args, **kwargs):
        import io

        assert path == "/proc/stat"
        rows = [(b * self.tck, (self.wall - b) * self.tck) for b in self.busy]
        lines = [f"cpu{name} {b:.0f} 0 0 {i:.0f} 0 0 0 0 0 0" for name, (b, i) in
                 [("", (sum(r[0] for r in rows), sum(r[1] for r in rows)))] + list(enumerate(rows))]
        return io.StringIO("\n".join(lines + ["intr 0", "ctxt 0"]) + "\n")


def test_cpu_share_counts_other_processes_not_its_own(monkeypatch):
    machine = _FakeMachine(monkeypatch, cores=2, mine={0, 1})
    share = threads.CpuShare(limit=2)
    assert share.adapt() == 2  # first call: the free cores over a short wait

    def elapse(own_cores, other_cores):
        total = own_cores + other_cores
        machine.elapse(10, {0: min(1.0, total), 1: max(0.0, total - 1.0)}, own=own_cores)

    elapse(own_cores=2.0, other_cores=0.0)  # alone on both cores: stays at 2
    assert share.adapt() == 2
    elapse(own_cores=1.5, other_cores=0.5)  # half a core of noise: no change
    assert share.adapt() == 2
    elapse(own_cores=1.3, other_cores=0.7)  # a neighbour took a core's share: 1 thread
    assert share.adapt() == 1
    elapse(own_cores=1.0, other_cores=1.0)  # still there
    assert share.adapt() == 1
    elapse(own_cores=1.0, other_cores=0.5)  # half a core: stays at 1
    assert share.adapt() == 1
    elapse(own_cores=1.0, other_cores=0.05)  # gone again
    assert share.adapt() == 2
    assert machine.applied == [2, 1, 2]


def test_cores_are_counted_and_measured_in_the_same_affinity_mask(monkeypatch):
    # a run pinned to cores 0-1 of 4 (taskset, a container's cpuset) beside a neighbour on those
    # two cores, with cores 2-3 idle: one core is left to it. Counting the machine's 4 cores
    # against the mask's 2 read 4 - 1 = 3 free and kept 2 threads (failed before)
    machine = _FakeMachine(monkeypatch, cores=4, mine={0, 1})
    share = threads.CpuShare()
    assert threads.cpu_count() == 2 and share.adapt() == 2
    machine.elapse(10, {0: 1.0, 1: 1.0}, own=1.0)  # our one core's worth plus the neighbour's
    assert share.adapt() == 1
    machine.elapse(10, {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}, own=2.0)  # others busy outside the mask only
    assert share.adapt() == 2
    assert threads.free_cores() == pytest.approx(2.0)


def test_cpu_meter_sees_a_real_busy_process():
    if threads._busy_seconds(None) is None:
        pytest.skip("this OS gives no CPU times")
    meter = threads.CpuMeter()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    busy.wait()
    others = meter.others_busy()
    assert others is not None and others >= 0.3  # 1.5 s of one busy core over the interval


def test_env_reports_threads():
    from extremefast.environment import environment_report

    report = environment_report()
    assert {"CPU cores usable", "CPU threads", "OpenMP wait policy"} <= set(report)
