"""Shared benchmark harness: timing, environment record, result table.

Every benchmark checks its answer before it times, measures its baseline in the same run
and prints the ratio; ``--json PATH`` also writes the rows with the environment.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timeit(fn, *, repeat: int = 5, warmup: int = 1, sync=None) -> float:
    """Median wall time (s) of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True).stdout.strip()
    except OSError:
        env["commit"] = "?"
    for mod in ("numpy", "scipy", "skimage", "numba", "torch", "triton", "cupy", "monai", "dijkstra3d", "pyamg"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            pass
    try:
        import torch

        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:
        env["gpu"] = "none"
    try:
        with open("/proc/cpuinfo") as fh:
            env["cpu"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "?")
    except OSError:
        env["cpu"] = "?"
    return env


def provenance(env: dict | None = None) -> dict:
    """Where a result file came from: commit, machine, command and date (``docs/results/*.json``).

    ``benchmarks/report.py`` prints it under each experiment and ``tests/test_docs.py`` requires it.
    """
    import datetime
    import shlex

    env = env or environment()
    gpu = env.get("gpu")
    machine = f"{env.get('cpus', '?')}-core {env.get('cpu', '?')}" + (f", {gpu}" if gpu not in (None, "none") else ", no GPU")
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return {"commit": env.get("commit") or "?", "machine": machine,
            "command": shlex.join(["python", str(script), *sys.argv[1:]]),
            "date": datetime.date.today().isoformat()}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--repeat", type=int, default=3)
    return p


def report(title: str, rows: list[dict], args, extra: dict | None = None):
    env = environment()
    print(f"\n## {title}")
    print(f"device: {env.get('gpu') if env.get('gpu') not in (None, 'none') else env.get('cpu')} "
          f"({env['cpus']} CPUs), commit {env['commit']}, torch {env.get('torch', '-')}, numpy {env.get('numpy')}")
    if rows:
        cols = list(rows[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    if args is not None and args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"provenance": provenance(env), "title": title, "environment": env,
                                         "rows": rows, **(extra or {})},
                                        indent=1, default=str))
    sys.stdout.flush()


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def realistic_crop(organ: int = 5, seed: int = 3, size: int = 128, preset: str = "paper"):
    """A 128^3 random-walker problem from a phantom: normalised crop and the paper's seeds."""
    import numpy as np

    from extremefast.data.synthetic import make_phantom
    from extremefast.pseudo import extreme_points, geodesic_scribbles, get_preset, gradient_cost, scribble_seeds
    from extremefast.pseudo.pseudo_label import prepare_crop

    image, labels, affine = make_phantom(seed)
    cfg = get_preset(preset).with_(crop_size=(size,) * 3)
    box, crop, crop_spacing, pts = prepare_crop(image, np.diag(affine)[:3], extreme_points(labels == organ), cfg)
    cost = gradient_cost(crop)
    pv = np.clip(np.rint(pts), 0, size - 1).astype(int)
    scribble = geodesic_scribbles(cost, pv)
    seeds = scribble_seeds(scribble, cfg.r_foreground, cfg.r_background)
    return crop, seeds, cost, pv, scribble
