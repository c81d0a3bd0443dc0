"""CPU threads on a machine the tool may share (an annotator's viewer, a second run).

Two rules, measured on the 2-core development CPU (README, "A CPU that is shared"):

* OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``): a thread that finishes its
  share of a parallel loop sleeps instead of spinning on a core the other process needs.
  torch and Numba each bring an OpenMP pool, which reads this once, when it loads; so the
  command line sets it before either is imported (:func:`prefer_passive_wait`), and a value
  the user set is kept.
* The number of threads follows the cores that are idle: :func:`idle_cores` samples
  ``/proc/stat`` for a moment while this process is between steps, and :func:`use_threads`
  gives torch and Numba that many (at least one). The training loop asks again at each round,
  so a run that starts beside a busy process, or is joined by one, follows it.

``EXTREMEFAST_THREADS=N`` fixes the count (no sampling); so do ``OMP_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` when set, as the user's word.
"""
from __future__ import annotations

import os
import sys
import time

THREADS_ENV = "EXTREMEFAST_THREADS"
SAMPLE_SECONDS = 0.3


def prefer_passive_wait() -> None:
    """Make OpenMP pools loaded from now on wait passively, unless the user chose a policy."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all cores from /proc/stat; None off Linux."""
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


def adapt_threads(limit: int | None = None, log=None) -> int:
    """Choose (:func:`choose_threads`) and apply (:func:`use_threads`) the thread count;
    ``log`` gets one line when the count changes from what torch used before."""
    n, why = choose_threads(limit)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    use_threads(n)
    if log is not None and before is not None and before != n:
        log(f"CPU threads: {n} ({why})")
    return n


def thread_report() -> dict[str, str]:
    """What ``extremefast env`` says about threads."""
    fixed = fixed_threads()
    idle = idle_cores()
    return {
        "CPU cores usable": str(cpu_count()),
        "CPU cores idle now": "unknown" if idle is None else f"{idle:.1f}",
        "CPU threads": (f"{fixed[0]} (set by {fixed[1]})" if fixed else
                        f"the idle cores, at least 1, checked at each round ({THREADS_ENV}=N fixes it)"),
        "OpenMP wait policy": os.environ.get("OMP_WAIT_POLICY") or "OpenMP's default (the command line sets PASSIVE)",
    }
