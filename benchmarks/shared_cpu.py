"""Training beside a busy process: the thread policy against plain all-core threads.

Runs round 1 of the README's main job, shortened (``--rounds 1 --epochs 4``), four times:
alone and beside one busy process (a Python loop on one core), each with the tool's policy
(torch and Numba threads follow the cores the other processes leave, checked before every
epoch) and with every core, as before; plus every core with OpenMP's passive wait. Prints round 1's seconds, the slowdown of each
policy beside the busy process (the fastest of ``--repeat`` runs, interleaved), and checks that every run reached the same validation Dice
band (the runs differ only in threads, so in float summation order).

    python benchmarks/shared_cpu.py --json docs/results/shared_cpu.json
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
        runs = {name: {"alone": [], "shared": []} for name in POLICIES}
        for rep in range(args.repeat):  # the policies interleaved, so that drift of the machine hits each alike
            for name, env in POLICIES.items():
                for where, busy in (("alone", False), ("shared", True)):
                    runs[name][where].append(run_round(Path(tmp) / f"{rep}{len(runs[name][where])}{where}{hash(name)}",
                                                       env, busy))
        for name, got in runs.items():
            vals = [r["val"] for r in got["alone"] + got["shared"]]
            if max(vals) - min(vals) > 0.02:
                raise SystemExit(f"{name}: validation Dice {min(vals):.3f}-{max(vals):.3f} differs between runs")
            alone = min(r["seconds"] for r in got["alone"])
            shared = min(r["seconds"] for r in got["shared"])
            rows.append({"threads": name, "round 1 alone (s)": alone, "beside a busy process (s)": shared,
                         "slowdown": shared / alone, "val Dice": vals[0],
                         "all runs alone": [round(r["seconds"], 1) for r in got["alone"]],
                         "all runs shared": [round(r["seconds"], 1) for r in got["shared"]]})
    report("round 1 of the main job alone and beside one busy process", rows, args)


if __name__ == "__main__":
    main()
