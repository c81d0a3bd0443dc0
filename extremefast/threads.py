"""CPU threads on a machine the tool may share (an annotator's viewer, a second run).

torch and Numba each run a pool of OpenMP threads, one per core by default. Beside a busy
process on the 2-core development CPU, round 1 of the main job then took 2.6 times as long
as alone, because a pool's threads wait for the one that shares its core with the other
process (README, "A CPU that is shared"). So the training loop gives torch and Numba as many
threads as there are cores left by the other processes, and asks again before every epoch
and every refresh (:class:`CpuShare`): a run started beside a busy process, or joined by one,
follows it within an epoch; on the same machine alone it runs on every core.

The other processes' use is read without pausing: the busy time of all cores in
``/proc/stat`` minus this process's own CPU time, over the last stretch of work. OpenMP's own
wait policy is left as it is (a short spin, then sleep): ``OMP_WAIT_POLICY=PASSIVE`` cost
20-25 % alone and gains nothing once the thread count follows the neighbours.

``EXTREMEFAST_THREADS=N`` fixes the count; so do ``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS``
when set, as the user's word.
"""
from __future__ import annotations

import os
import sys
import time

THREADS_ENV = "EXTREMEFAST_THREADS"
SAMPLE_SECONDS = 0.3
HYSTERESIS = 0.6  # cores by which the free ones must differ from the thread count to change it


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) clock ticks of all cores from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values)


def idle_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores were idle over the next ``seconds`` (this process's own use counted as
    busy; call it between steps). None where the OS does not say."""
    start = _cpu_times()
    if start is None:
        return None
    time.sleep(seconds)
    end = _cpu_times()
    total = end[1] - start[1]
    if total <= 0:
        return None
    online = os.cpu_count() or 1
    return max(0.0, (end[0] - start[0]) / total * online)


def fixed_threads() -> tuple[int, str] | None:
    """The thread count the user fixed, and where, if any."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def choose_threads(limit: int | None = None) -> tuple[int, str]:
    """(threads, why): the user's fixed count, else the idle cores (rounded, at least 1), at
    most ``limit`` (default: the cores this process may use)."""
    limit = max(1, limit or cpu_count())
    fixed = fixed_threads()
    if fixed is not None:
        return fixed[0], f"set by {fixed[1]}"
    idle = idle_cores()
    if idle is None:
        return limit, "all cores (idle cores unknown on this OS)"
    return max(1, min(limit, int(idle + 0.5))), f"{idle:.1f} of {os.cpu_count()} cores idle"


def use_threads(n: int) -> None:
    """Run torch (if loaded) and Numba's parallel loops on ``n`` threads."""
    n = max(1, int(n))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # numba absent or its pool not available: nothing to set
        pass


class CpuShare:
    """The thread count of the next stretch of work, from what the other processes used in
    the last one (see the module's notes).

    Parameters
    ----------
    limit : int, optional
        At most this many threads (default: the cores this process may use).
    log : callable, optional
        Gets one line each time the count changes.
    """

    def __init__(self, limit: int | None = None, log=None):
        self.limit = max(1, limit or cpu_count())
        self.log = log
        self.threads: int | None = None
        self._mark = None

    def _read(self):
        times = _cpu_times()
        if times is None:
            return None
        own = os.times()
        return time.perf_counter(), times[1] - times[0], own.user + own.system

    def others_busy(self) -> float | None:
        """Cores the other processes kept busy since the last call (None: first call or no
        /proc/stat)."""
        now, before = self._read(), self._mark
        self._mark = now
        if now is None or before is None or now[0] - before[0] < 0.05:
            return None
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = (now[1] - before[1]) / ticks - (now[2] - before[2])
        return max(0.0, busy / (now[0] - before[0]))

    def _follow(self, others: float) -> int:
        """The count for ``others`` busy cores, with a margin against noise: it changes only when
        the free cores differ from the present count by at least HYSTERESIS (alone, the readings
        between epochs wander by up to half a core; a busy neighbour reads 0.7-1.0)."""
        free = (os.cpu_count() or 1) - others
        current = self.threads or self.limit
        if abs(free - current) < HYSTERESIS:
            return current
        return max(1, min(self.limit, int(free + 1.0 - HYSTERESIS)))

    def adapt(self) -> int:
        """Choose and apply (:func:`use_threads`) the count for what comes next."""
        fixed = fixed_threads()
        if fixed is not None:
            n, why = fixed[0], f"set by {fixed[1]}"
        else:
            others = self.others_busy()
            if others is None:
                n, why = choose_threads(self.limit)
            else:
                n, why = self._follow(others), f"other processes kept {others:.1f} cores busy"
        if n != self.threads:
            use_threads(n)
            if self.log is not None and self.threads is not None:
                self.log(f"CPU threads: {n} ({why})")
            self.threads = n
            self._mark = self._read()  # the next interval starts with the new count
        return n


def thread_report() -> dict[str, str]:
    """What ``extremefast env`` says about threads."""
    fixed = fixed_threads()
    idle = idle_cores()
    return {
        "CPU cores usable": str(cpu_count()),
        "CPU cores idle now": "unknown" if idle is None else f"{idle:.1f}",
        "CPU threads": (f"{fixed[0]} (set by {fixed[1]})" if fixed else
                        f"the cores other processes leave, at least 1, checked before every epoch "
                        f"({THREADS_ENV}=N fixes it)"),
        "OpenMP wait policy": os.environ.get("OMP_WAIT_POLICY") or "OpenMP's default (spin briefly, then sleep)",
    }
