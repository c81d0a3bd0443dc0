"""Training beside a busy process: the thread policy against plain all-core threads.

Runs round 1 of the README's main job, shortened (``--rounds 1 --epochs 4``), four times:
alone and beside one busy process (a Python loop on one core), each with the tool's policy
(torch and Numba threads follow the cores the other processes leave, checked before every
epoch) and with every core, as before; plus every core with OpenMP's passive wait. Prints round 1's seconds, the slowdown of each
policy beside the busy process, and checks that every run reached the same validation Dice
band (the runs differ only in threads, so in float summation order).

    python benchmarks/shared_cpu.py --json docs/results/cpu_shared_cpu.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import parser, report

ALL = str(os.cpu_count() or 1)
POLICIES = {"tool (threads follow the neighbours)": {},
            "every core": {"EXTREMEFAST_THREADS": ALL},
            "every core, OMP_WAIT_POLICY=PASSIVE": {"EXTREMEFAST_THREADS": ALL, "OMP_WAIT_POLICY": "PASSIVE"}}


def run_round(out: Path, env: dict, busy: bool) -> dict:
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        subprocess.run([sys.executable, "-m", "extremefast", "train", "--data", "synthetic", "--rounds", "1",
                        "--epochs", "4", "--out", str(out)], env=dict(os.environ, **env), check=True,
                       capture_output=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": summary["rounds"][1]["seconds"], "val": summary["rounds"][1]["val_dice"]["mean"]}


def main():
    args = parser(__doc__).parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_round(Path(tmp) / "warm", {}, False)  # phantoms written, kernels compiled
        for name, env in POLICIES.items():
            alone = run_round(Path(tmp) / f"{len(rows)}a", env, False)
            shared = run_round(Path(tmp) / f"{len(rows)}b", env, True)
            for r in (alone, shared):
                if abs(r["val"] - alone["val"]) > 0.02:
                    raise SystemExit(f"{name}: validation Dice {r['val']:.3f} differs from {alone['val']:.3f}")
            rows.append({"threads": name, "round 1 alone (s)": alone["seconds"],
                         "beside a busy process (s)": shared["seconds"],
                         "slowdown": shared["seconds"] / alone["seconds"], "val Dice": shared["val"]})
    report("round 1 of the main job alone and beside one busy process", rows, args)


if __name__ == "__main__":
    main()
