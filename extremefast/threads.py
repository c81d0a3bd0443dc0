"""CPU threads on a machine the tool may share (an annotator's viewer, a second run).

torch and Numba each run a pool of OpenMP threads, one per core by default. Beside a busy
process on the 2-core development CPU, round 1 of the main job then took 2.6 times as long
as alone, because a pool's threads wait for the one that shares its core with the other
process (README, "A CPU that is shared"). So the training loop gives torch and Numba as many
threads as there are cores left by the other processes, and asks again before every epoch
and every refresh (:class:`CpuShare`): a run started beside a busy process, or joined by one,
follows it within an epoch; on the same machine alone it runs on every core.

One count and one measure serve every caller. The cores are those this process may run on
(:func:`cpu_count`: its affinity mask, as ``taskset`` or a container's ``--cpuset-cpus`` sets
it). The other processes' use of them is read without pausing: the busy time of those cores
in ``/proc/stat`` minus this process's own CPU time, over the last stretch of work
(:class:`CpuMeter`); where there has been no stretch yet, over a short wait
(:func:`free_cores`). Off Linux there is no ``/proc/stat``: the use is unknown and the count
is every usable core. (psutil reads the same ``/proc/stat`` lines on Linux; it is not a
dependency of the base install, which computes pseudo labels with these threads too.)
OpenMP's own wait policy is left as it is (a short spin, then sleep):
``OMP_WAIT_POLICY=PASSIVE`` cost 20-25 % alone and gains nothing once the thread count
follows the neighbours.

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


def usable_cores() -> set[int] | None:
    """The ids of the cores this process may run on (its affinity mask); None where the OS
    keeps no mask (macOS, Windows): then every core."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return None


def cpu_count() -> int:
    """How many cores this process may run on (:func:`usable_cores`)."""
    cores = usable_cores()
    return len(cores) if cores else (os.cpu_count() or 1)


def _busy_seconds(cores: set[int] | None) -> float | None:
    """CPU seconds that all processes together have spent on ``cores`` (None: every core)
    since boot, from ``/proc/stat``; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    ticks = 0.0
    for line in lines:
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or (cores is not None and int(name[3:]) not in cores):
            continue
        # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
        values = [float(v) for v in values[:8]]
        ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How many of the usable cores the other processes keep busy: the busy time of those
    cores minus this process's own CPU time, between two readings."""

    def __init__(self):
        self.cores = usable_cores()
        self._mark = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall clock, busy seconds of the usable cores, this process's CPU seconds)."""
        busy = _busy_seconds(self.cores)
        if busy is None:
            return None
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    def others_busy(self) -> float | None:
        """Cores the other processes kept busy since the last call (or since the meter was
        made); None without ``/proc/stat`` or over less than 0.05 s."""
        now, before = self._read(), self._mark
        self._mark = now
        if now is None or before is None or now[0] - before[0] < 0.05:
            return None
        return max(0.0, ((now[1] - before[1]) - (now[2] - before[2])) / (now[0] - before[0]))


def free_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """The usable cores the other processes left free over the next ``seconds`` (this call
    waits that long); None where the OS does not say."""
    meter = CpuMeter()
    time.sleep(seconds)
    others = meter.others_busy()
    return None if others is None else max(0.0, cpu_count() - others)


def fixed_threads() -> tuple[int, str] | None:
    """The thread count the user fixed, and where, if any."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def current_threads() -> int:
    """The threads this process's compiled loops may use now: Numba's count (which
    :func:`use_threads` sets), capped by a count the user fixed (:func:`fixed_threads`)."""
    try:
        import numba

        n = numba.get_num_threads()
    except Exception:  # numba absent or its pool not available
        n = cpu_count()
    fixed = fixed_threads()
    return max(1, min(n, fixed[0]) if fixed else n)


def threads_for(free: float, limit: int, current: int | None = None) -> int:
    """The thread count for ``free`` cores: at least 1, at most ``limit``. With a ``current``
    count, a margin against noise: it changes only when the free cores differ from it by at
    least HYSTERESIS (alone, the readings between epochs wander by up to half a core; a busy
    neighbour reads 0.7-1.0)."""
    if current is not None and abs(free - current) < HYSTERESIS:
        return current
    return max(1, min(limit, int(free + 1.0 - HYSTERESIS)))


def choose_threads(limit: int | None = None) -> tuple[int, str]:
    """(threads, why): the user's fixed count, else the cores the other processes leave free
    (:func:`free_cores`, :func:`threads_for`), at most ``limit`` (default: the usable cores)."""
    limit = max(1, limit or cpu_count())
    fixed = fixed_threads()
    if fixed is not None:
        return fixed[0], f"set by {fixed[1]}"
    free = free_cores()
    if free is None:
        return limit, "all usable cores (the other processes' use is unknown on this OS)"
    return threads_for(free, limit), f"{free:.1f} of {cpu_count()} usable cores free"


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
        self.meter: CpuMeter | None = None

    def _choose(self) -> tuple[int, str]:
        fixed = fixed_threads()
        if fixed is not None:
            return fixed[0], f"set by {fixed[1]}"
        if self.meter is None:  # no stretch of work yet: over a short wait
            return choose_threads(self.limit)
        others = self.meter.others_busy()
        if others is None:
            return self.threads or self.limit, "no new reading"
        return (threads_for(cpu_count() - others, self.limit, self.threads or self.limit),
                f"other processes kept {others:.1f} cores busy")

    def adapt(self) -> int:
        """Choose and apply (:func:`use_threads`) the count for what comes next."""
        n, why = self._choose()
        if n != self.threads:
            use_threads(n)
            if self.log is not None and self.threads is not None:
                self.log(f"CPU threads: {n} ({why})")
            self.threads = n
            self.meter = CpuMeter()  # the next interval starts with the new count
        return n


def thread_report() -> dict[str, str]:
    """What ``extremefast env`` says about threads."""
    fixed = fixed_threads()
    free = free_cores()
    return {
        "CPU cores usable": str(cpu_count()),
        "CPU cores free now": "unknown" if free is None else f"{free:.1f}",
        "CPU threads": (f"{fixed[0]} (set by {fixed[1]})" if fixed else
                        f"the cores other processes leave, at least 1, checked before every epoch "
                        f"({THREADS_ENV}=N fixes it)"),
        "OpenMP wait policy": os.environ.get("OMP_WAIT_POLICY") or "OpenMP's default (spin briefly, then sleep)",
    }
