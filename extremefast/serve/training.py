"""Training runs of the server: ``extremefast train --points`` in a separate process, followed from here.

Each run is a folder ``DIR/.extremefast/runs/RUN/``: ``run.json`` (what was asked, the process, its status),
``train.log`` (the command's output), ``points/`` (the clicks as they were when the run started, so that a
resumed run trains on the same ones) and the command's own outputs (``state.pt`` after every epoch,
``model.pt`` and ``summary.json`` at the end). Inference goes on in the server while a run trains.

A stop (SIGTERM) leaves ``state.pt`` of the last finished epoch: ``--resume`` goes on from there. A server
that is killed leaves its run's process running; the next server follows it again, or resumes the run when
the process is gone before it finished, or says why it cannot.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import DataError, InputError
from ..jsonio import read_json, write_json
from .errors import Conflict, NotFound

# the command's line per round (extremefast.train.report.row_line)
_ROW = re.compile(r"round\s+(\d+): pseudo-label Dice (\S+|\(no masks\)), validation Dice (\S+|\(no masks\))"
                  r"(?: \(with the walker (\S+|\(no masks\))\))?(?:, label change ([\d.]+))? \(([\d.]+) s\)")
TRAIN_OPTIONS = {  # request key -> the option of `extremefast train`
    "rounds": "--rounds", "epochs": "--epochs", "crop_size": "--crop-size", "batch_size": "--batch-size",
    "variant": "--variant", "seed": "--seed", "train_cases": "--train-cases", "device": "--device",
    "point_loss_weight": "--point-loss-weight", "pad_fraction": "--pad-fraction",
}


def _score(text):
    if text is None or text.startswith("("):
        return None
    try:
        return float(text.rstrip(","))
    except ValueError:
        return None


def parse_rows(log_text: str) -> list[dict]:
    """The per-round rows the command printed (round, pseudo-label Dice, validation Dice, label change)."""
    rows = {}
    for m in _ROW.finditer(log_text):
        rnd = int(m.group(1))
        rows[rnd] = {"round": rnd, "pseudo_label_dice": _score(m.group(2)), "val_dice": _score(m.group(3)),
                     "val_dice_with_walker": _score(m.group(4)),
                     "label_change": float(m.group(5)) if m.group(5) else None, "seconds": float(m.group(6))}
    return [rows[k] for k in sorted(rows)]


def _mean(score) -> float | None:
    return score.get("mean") if score and score.get("n") else None


def _summary(summary: dict) -> tuple[list[dict], dict]:
    """The per-round rows and the result of a finished run's ``summary.json``."""
    rows = [{"round": r["round"], "pseudo_label_dice": _mean(r.get("pseudo_label_dice")),
             "val_dice": _mean(r.get("val_dice")), "val_dice_with_walker": _mean(r.get("val_dice_with_walker")),
             "label_change": r.get("label_change"), "seconds": r.get("seconds")} for r in summary.get("rounds", [])]
    result = {"best_round": summary.get("best_round"), "final_val_dice": summary.get("final_val_dice"),
              "final_val_dice_with_walker": summary.get("final_val_dice_with_walker"), "model": "extreme_points_model"}
    return rows, result


def _alive(pid: int | None, run_dir: Path) -> bool:
    """Whether ``pid`` is still this run's process (not a reused pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if str(run_dir) not in cmdline:
            return False
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished
    except OSError:
        return True  # no /proc: trust the signal


class TrainingRuns:
    """Start, follow, stop and resume the training runs of a datastore.

    Parameters
    ----------
    datastore : Datastore
    on_finished : callable, optional
        Called with the run's folder when a run finished with a model (the server reloads it).
    python : str
        The interpreter that runs ``python -m extremefast train``.
    """

    def __init__(self, datastore, *, on_finished=None, python: str = sys.executable):
        self.ds = datastore
        self.dir = datastore.state_dir / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.on_finished = on_finished
        self.python = python
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopping: set[str] = set()

    # ------------------------------------------------------------------ records
    def _runs(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if (p / "run.json").is_file())

    def _read(self, run_dir: Path) -> dict:
        return read_json(run_dir / "run.json")

    def _write(self, run_dir: Path, record: dict) -> None:
        write_json(run_dir / "run.json", record)

    def latest(self) -> Path | None:
        runs = self._runs()
        return runs[-1] if runs else None

    def running(self) -> Path | None:
        with self._lock:
            for run_dir in self._runs():
                rec = self._read(run_dir)
                if rec["status"] in ("SUBMITTED", "RUNNING") and self._is_alive(run_dir, rec):
                    return run_dir
        return None

    def _is_alive(self, run_dir: Path, rec: dict) -> bool:
        proc = self._procs.get(run_dir.name)
        if proc is not None:
            return proc.poll() is None
        return _alive(rec.get("pid"), run_dir)

    def finished_model(self) -> Path | None:
        """``model.pt`` of the latest run that finished (only the server's own runs)."""
        for run_dir in reversed(self._runs()):
            try:
                rec = self._read(run_dir)
            except DataError:
                continue
            if rec.get("status") == "DONE" and (run_dir / "model.pt").is_file():
                return run_dir
        return None

    def task(self, run_dir: Path) -> dict:
        """The run as ``GET /train/`` reports it (with the fields 3D Slicer's progress bars read)."""
        rec = self._read(run_dir)
        log = run_dir / "train.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        rows, result = parse_rows(text), None
        if rec["status"] == "DONE" and (run_dir / "summary.json").exists():
            try:
                rows, result = _summary(read_json(run_dir / "summary.json"))
            except DataError:
                pass
        done = rows[-1]["round"] if rows else 0  # round 0 trains on the first pseudo labels; then 1..rounds
        best = max((r["val_dice"] for r in rows if r["val_dice"] is not None), default=None)
        return {"id": run_dir.name, "name": "train", "status": rec["status"], "request": rec.get("request", {}),
                "start_ts": rec.get("start_ts"), "end_ts": rec.get("end_ts"), "pid": rec.get("pid"),
                "reason": rec.get("reason"), "resumable": rec["status"] in ("STOPPED", "ERROR") and
                (run_dir / "state.pt").exists(),
                "progress": {"round": rows[-1]["round"] if rows else None, "rounds": rec.get("rounds"), "rows": rows},
                "epoch": done, "total_epochs": rec.get("rounds") or max(done, 1), "best_metric": best or 0.0,
                "details": [line for line in text.splitlines() if line.strip()][-30:], "result": result}

    def status(self, all: bool = False, check_if_running: bool = False):
        self.poll()
        if check_if_running:
            run_dir = self.running()
            if run_dir is None:
                raise NotFound("no training run is going")
            return self.task(run_dir)
        runs = self._runs()
        if not runs:
            raise NotFound("no training run yet")
        return [self.task(r) for r in runs] if all else self.task(runs[-1])

    def log(self, lines: int = 200) -> str:
        run_dir = self.latest()
        if run_dir is None:
            raise NotFound("no training run yet")
        path = run_dir / "train.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-max(1, int(lines)):]) + "\n"

    # ------------------------------------------------------------------ start / stop
    def start(self, request: dict) -> dict:
        """Start a run on the clicks so far (or, with ``resume``, resume the latest unfinished one)."""
        request = {k: v for k, v in request.items() if v is not None and k != "client_id"}
        resume = bool(request.pop("resume", False))
        with self._lock:
            if self.running() is not None:
                raise Conflict("a training run is going; stop it (DELETE /train/) or wait for it")
            if resume:
                run_dir = self._resumable()
                return self._launch(run_dir, self._read(run_dir)["request"], resume=True,
                                    reason="resumed on request")
            clicked = [i for i in self.ds.ids() if self.ds.clicks_file(i) is not None]
            if len(clicked) < 2:
                raise InputError(f"training needs six clicks on at least 2 scans; {len(clicked)} scan(s) have them")
            run_dir = self.dir / time.strftime("%Y%m%d-%H%M%S")
            n = 1
            while run_dir.exists():
                n += 1
                run_dir = self.dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
            points = run_dir / "points"
            points.mkdir(parents=True)
            from ..atomic import write_bytes

            for case_id in clicked:
                src = self.ds.clicks_file(case_id)
                write_bytes(points / src.name, src.read_bytes())
            return self._launch(run_dir, request, resume=False)

    def _resumable(self) -> Path:
        for run_dir in reversed(self._runs()):
            rec = self._read(run_dir)
            if rec["status"] in ("STOPPED", "ERROR", "RUNNING", "SUBMITTED"):
                if not (run_dir / "points").is_dir():
                    raise InputError(f"run {run_dir.name} cannot be resumed: its clicks folder is gone")
                return run_dir
            if rec["status"] == "DONE":
                break
        raise NotFound("no unfinished training run to resume")

    def _command(self, run_dir: Path, request: dict, resume: bool) -> list[str]:
        cmd = [self.python, "-m", "extremefast", "train", "--data", str(self.ds.root), "--points",
               str(run_dir / "points"), "--out", str(run_dir), "--label", str(self.ds.organ_value)]
        for key, option in TRAIN_OPTIONS.items():
            if key in request:
                value = request[key]  # also read back from run.json on a restart: plain values only
                if not isinstance(value, (int, float, str)) or not re.fullmatch(r"-?[0-9.]+|[A-Za-z0-9_.]+", str(value)):
                    raise InputError(f"training option {key}={value!r} is not a plain number or name")
                cmd += [option, str(value)]
        if "refresh_with_walker" in request:
            cmd.append("--refresh-with-walker" if request["refresh_with_walker"] else "--paper-refresh")
        if resume:
            cmd.append("--resume")
        return cmd

    def _launch(self, run_dir: Path, request: dict, *, resume: bool, reason: str | None = None) -> dict:
        cmd = self._command(run_dir, request, resume)
        env = dict(os.environ, COLUMNS="400", PYTHONUNBUFFERED="1", EXTREMEFAST_DEBUG="0")
        rounds = request.get("rounds")
        if rounds is None:
            try:
                from ..model import default_config

                rounds = default_config(request.get("variant", "f"), cuda=False).rounds
            except Exception:
                rounds = None
        with open(run_dir / "train.log", "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, cwd=str(run_dir))
        self._procs[run_dir.name] = proc
        record = {"id": run_dir.name, "status": "RUNNING", "request": request, "command": cmd, "pid": proc.pid,
                  "start_ts": time.time(), "end_ts": None, "reason": reason, "rounds": rounds}
        self._write(run_dir, record)
        threading.Thread(target=self._follow, args=(run_dir, proc), daemon=True, name=f"train-{run_dir.name}").start()
        return self.task(run_dir)

    def _follow(self, run_dir: Path, proc: subprocess.Popen | None, pid: int | None = None) -> None:
        if proc is not None:
            rc = proc.wait()
        else:
            while _alive(pid, run_dir):
                time.sleep(1.0)
            rc = None
        self._finish(run_dir, rc)

    def _finish(self, run_dir: Path, rc: int | None) -> None:
        with self._lock:
            self._procs.pop(run_dir.name, None)
            rec = self._read(run_dir)
            if rec["status"] not in ("RUNNING", "SUBMITTED"):
                return
            finished = (run_dir / "model.pt").is_file() and (run_dir / "summary.json").is_file() and \
                (run_dir / "summary.json").stat().st_mtime >= rec["start_ts"] - 1
            rec["end_ts"] = time.time()
            rec["returncode"] = rc
            if run_dir.name in self._stopping:
                self._stopping.discard(run_dir.name)
                rec["status"], rec["reason"] = "STOPPED", rec.get("stop_reason") or "stopped on request"
            elif finished and rc in (0, None):
                rec["status"] = "DONE"
            else:
                rec["status"] = "ERROR"
                rec["reason"] = self._error_line(run_dir) if rc is not None else \
                    "the run's process ended without finishing; resume it with POST /train/ {\"resume\": true}"
            self._write(run_dir, rec)
        if rec["status"] == "DONE" and self.on_finished is not None:
            self.on_finished(run_dir)

    def _error_line(self, run_dir: Path) -> str:
        path = run_dir / "train.log"
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.exists() else []
        for line in reversed(lines):
            if line.startswith("extremefast: error:"):
                return line.removeprefix("extremefast: error:").strip()
        return lines[-1] if lines else "the training process failed without output"

    def stop(self, reason: str | None = None) -> dict:
        """Stop the running run (SIGTERM, then SIGKILL after 15 s); it stays resumable."""
        with self._lock:
            run_dir = self.running()
            if run_dir is None:
                raise NotFound("no training run is going")
            rec = self._read(run_dir)
            self._stopping.add(run_dir.name)
            if reason:
                rec["stop_reason"] = reason
                self._write(run_dir, rec)
            proc = self._procs.get(run_dir.name)
            pid = proc.pid if proc is not None else rec.get("pid")
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 15
        while time.time() < deadline and self._is_alive(run_dir, rec):
            time.sleep(0.1)
        if self._is_alive(run_dir, rec):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if proc is None or proc.poll() is None:
            if proc is not None:
                proc.wait(timeout=10)
            else:
                self._finish(run_dir, -signal.SIGTERM)
        deadline = time.time() + 5
        while time.time() < deadline and self._read(run_dir)["status"] == "RUNNING":
            time.sleep(0.05)
        return self.task(run_dir)

    # ------------------------------------------------------------------ server start and end
    def poll(self) -> None:
        """Settle runs whose process this server does not follow (after a restart)."""
        for run_dir in self._runs():
            rec = self._read(run_dir)
            if rec["status"] in ("RUNNING", "SUBMITTED") and run_dir.name not in self._procs \
                    and not _alive(rec.get("pid"), run_dir):
                self._finish(run_dir, None)

    def recover(self, log=print) -> None:
        """At start-up: follow a run that outlived the last server, resume one that it left unfinished."""
        for run_dir in self._runs():
            try:
                rec = self._read(run_dir)
            except DataError as exc:
                log(f"training run {run_dir.name}: unreadable record ({exc}); left alone")
                continue
            interrupted = rec["status"] in ("RUNNING", "SUBMITTED") or rec.get("resume_on_start")
            if not interrupted:
                continue
            if rec["status"] in ("RUNNING", "SUBMITTED") and _alive(rec.get("pid"), run_dir):
                log(f"training run {run_dir.name} is still going (pid {rec['pid']}); following it")
                threading.Thread(target=self._follow, args=(run_dir, None, rec["pid"]), daemon=True).start()
                continue
            finished = (run_dir / "model.pt").is_file() and (run_dir / "summary.json").is_file() and \
                (run_dir / "summary.json").stat().st_mtime >= rec["start_ts"] - 1
            if finished:
                rec.update(status="DONE", end_ts=rec.get("end_ts") or time.time(), resume_on_start=False)
                self._write(run_dir, rec)
                continue
            if not (run_dir / "points").is_dir():
                rec.update(status="ERROR", resume_on_start=False,
                           reason="interrupted by a server restart and cannot be resumed: its clicks folder is gone")
                self._write(run_dir, rec)
                log(f"training run {run_dir.name}: {rec['reason']}")
                continue
            if self.running() is not None:
                rec.update(status="STOPPED", resume_on_start=False,
                           reason="interrupted by a server restart; another run is going, resume it later")
                self._write(run_dir, rec)
                continue
            log(f"training run {run_dir.name} was interrupted; resuming it")
            try:
                self._launch(run_dir, rec.get("request", {}), resume=True,
                             reason="resumed after the server restarted")
            except InputError as exc:
                rec.update(status="ERROR", resume_on_start=False, reason=f"cannot be resumed: {exc}")
                self._write(run_dir, rec)
                log(f"training run {run_dir.name}: {rec['reason']}")

    def shutdown(self) -> None:
        """At server exit: stop the run this server started; the next server resumes it."""
        run_dir = self.running()
        if run_dir is None:
            return
        try:
            self.stop(reason="stopped with the server; the next start resumes it")
        except (NotFound, DataError):
            return
        rec = self._read(run_dir)
        rec["resume_on_start"] = True
        self._write(run_dir, rec)
