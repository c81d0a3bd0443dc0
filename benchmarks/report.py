"""Write ``docs/results.md`` from the result files in ``docs/results/*.json``.

One section per experiment (one JSON file each): a table of its figures and the provenance line
(commit, date, machine, command). The page is generated, never edited by hand::

    python benchmarks/report.py            # writes docs/results.md
    python benchmarks/report.py --check    # exit 1 when docs/results.md is not what the JSON files give

``tests/test_docs.py`` runs the check, so a result file changed without regenerating the page
fails the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
PAGE = REPO / "docs" / "results.md"
PROVENANCE_FIELDS = ("commit", "machine", "command", "date")

# Sections in reading order; a JSON file not listed here still gets a section, under "Other".
GROUPS = [
    ("Random walker and the other kernels", [
        "random_walker_real_battery", "random_walker", "random_walker_h100", "dijkstra", "seeds",
        "pseudo_label_speed", "pseudo_label_steps", "refresh", "point_loss", "point_loss_h100", "network",
        "network_h100", "shared_cpu"]),
    ("Pseudo labels", ["pseudo_label_real", "clicks_workflow_sarcoma"]),
    ("Training: Table 1 and the main job", [
        "ablation_sarcoma", "ablation_headneck_mandible", "ablation_headneck_rightparotid", "pad_fraction_runs",
        "sarcoma_folds", "train_synthetic_f", "train_synthetic_full", "ablation_synthetic", "train_synthetic_e"]),
    ("Training tries (settings tried and not adopted, or adopted before later changes)", [
        "sarcoma_size_tries", "sarcoma_budget_tries", "refresh_with_walker_runs", "with_walker_scores"]),
]


def _cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and {"mean", "std", "median"} <= set(v):
        return _stat(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v).replace("|", "\\|").replace("\n", " ").strip()


def _stat(s) -> str:
    """``mean±std (median)`` of a ``{"mean", "std", "median", "n"}`` record, 3 decimals."""
    if not isinstance(s, dict) or "mean" not in s:
        return "–" if s is None else _cell(s)
    text = f"{s['mean']:.3f}±{s.get('std', 0.0):.3f} ({s.get('median', s['mean']):.3f})"
    return text + (f", n={s['n']}" if "n" in s else "")


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) if not isinstance(c, str) else c.replace("|", "\\|") for c in r) + " |"
            for r in rows]
    return out


def _harness(d: dict) -> list[str]:
    rows = d["totals"] if d.get("totals") else d["rows"]
    lines = []
    if d.get("totals"):
        lines.append(f"Totals over the battery ({len(d['rows'])} per-problem rows in the JSON file):")
        lines.append("")
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines += _table(cols, [[r.get(c, "") for c in cols] for r in rows])
    return lines


def _ablation(d: dict) -> list[str]:
    rows = [["rnd. walk. init.", _stat(d["random_walker_init"]), "0", ""]]
    for v in d["variants"]:
        rows.append([f"({v['variant']}) {v.get('name', '')}" if v["variant"] != "full" else v.get("name", "full"),
                     _stat(v.get("val_dice")), str(v.get("best_round", "")),
                     _stat(v["val_dice_with_walker"]) if "val_dice_with_walker" in v else ""])
    return [f"Data: `{d.get('data', '?')}`. Validation Dice, mean±std (median):", ""] + _table(
        ["method", "Dice", "round kept", "with the walker at prediction"], rows)


def _rounds(d: dict) -> list[str]:
    rows = [[str(r.get("round", "")), _stat(r.get("pseudo_label_dice")), _stat(r.get("val_dice")),
             _stat(r.get("val_dice_with_walker")) if "val_dice_with_walker" in r else "",
             f"{r['seconds']:.0f}" if isinstance(r.get("seconds"), (int, float)) else ""]
            for r in d["rounds"]]
    head = [f"Variant {d.get('variant', '?')}; kept round {d.get('best_round', '?')}, validation Dice "
            f"{_stat(d.get('final_val_dice'))}.", ""]
    return head + _table(["round", "pseudo-label Dice (training cases)", "validation Dice", "with the walker",
                          "seconds"], rows)


def _run_row(name: str, r: dict) -> list[str]:
    val = r.get("validation") or {}
    network = val.get("network") or r.get("final_val_dice")
    if network is None and r.get("rounds") and r.get("best_round") is not None:
        kept = [x for x in r["rounds"] if x.get("round") == r["best_round"]]
        network = kept[0].get("val_dice") if kept else None
    minutes = r.get("minutes")
    if minutes is None and isinstance(r.get("seconds"), (int, float)):
        minutes = r["seconds"] / 60
    what = r.get("what") or (", ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items())
                             + (f" (variant {r['variant']})" if r.get("variant") else ""))
    return [name, _cell(what), str(r.get("best_round", "")), _stat(network) if network else "–",
            _stat(val["with_walker"]) if "with_walker" in val else "–",
            _stat(val["walker"]) if "walker" in val else "–",
            f"{minutes:.1f}" if isinstance(minutes, (int, float)) else "–"]


def _runs(runs: dict) -> list[str]:
    rows = [_run_row(k, v) for k, v in runs.items() if isinstance(v, dict)]
    return _table(["run", "what", "round kept", "validation Dice (network)", "with the walker", "walker alone",
                   "minutes"], rows)


def _clicks(d: dict) -> list[str]:
    rows = [[k, _stat(v)] for k, v in d["dice"].items()]
    lines = [f"Validation cases: {', '.join(d.get('validation_cases', []))}; clicks 2 mm off the extreme "
             f"points (noise {d.get('noise_mm', '?')} mm).", ""]
    lines += _table(["masks of the held-out scans", "Dice"], rows)
    if d.get("minutes"):
        lines += ["", "Minutes: " + "; ".join(f"{k} {v:.1f}" for k, v in d["minutes"].items())
                  + ". Kept rounds: " + "; ".join(f"{k} {v}" for k, v in d.get("kept_round", {}).items()) + "."]
    return lines


def _folds(d: dict) -> list[str]:
    lines = ["Over every case (each validated once):", ""]
    lines += _table(["", "Dice"], [[k, _stat(v)] for k, v in d["all_cases"].items()])
    return lines + ["", "Per fold:", ""] + _runs(d["runs"])


def body(d: dict) -> list[str]:
    """The figures of one result file as Markdown lines (the renderer follows the file's shape)."""
    if "rows" in d and isinstance(d["rows"], list):
        return _harness(d)
    if "variants" in d and "random_walker_init" in d:
        return _ablation(d)
    if "all_cases" in d and "runs" in d:
        return _folds(d)
    if "dice" in d and "validation_cases" in d:
        return _clicks(d)
    if "rounds" in d and isinstance(d["rounds"], list):
        return _rounds(d)
    lines = []
    for key in ("trained_runs", "runs", "models"):
        if isinstance(d.get(key), dict):
            lines += (["", f"`{key}`:", ""] if lines else []) + _runs(d[key])
    if lines:
        return lines
    return _table(["key", "value"], [[k, v] for k, v in d.items() if k != "provenance"])


def provenance_line(p: dict) -> str:
    line = (f"*Provenance:* commit `{p.get('commit', '?')}`, {p.get('date', '?')}, {p.get('machine', '?')}. "
            f"Command: `{p.get('command', '?')}`.")
    if p.get("note"):
        line += f" Note: {p['note']}."
    return line


def section(name: str, d: dict) -> list[str]:
    title = d.get("title") or d.get("what")
    lines = [f"### {name}", "", f"File: [`results/{name}.json`](results/{name}.json)."
             + (f" {_cell(title)}." if title else ""), ""]
    return lines + body(d) + ["", provenance_line(d.get("provenance", {})), ""]


def render(results: Path = RESULTS) -> str:
    files = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))}
    listed = [n for _, names in GROUPS for n in names]
    groups = [(g, [n for n in names if n in files]) for g, names in GROUPS]
    groups.append(("Other", [n for n in files if n not in listed]))
    out = ["# Results", "",
           "Generated by `python benchmarks/report.py` from `docs/results/*.json`; do not edit by hand.",
           "One file per experiment, each with the commit, date, machine and command it came from. What the",
           "figures were before, and what was tried, is in [history.md](history.md).", ""]
    for g, names in groups:
        if not names:
            continue
        out += [f"## {g}", ""]
        for n in names:
            out += section(n, files[n])
    others = sorted(p.name for p in results.iterdir() if p.suffix in (".txt", ".png"))
    if others:
        out += ["## Logs and figures", ""] + [f"- [`results/{n}`](results/{n})" for n in others] + [""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is out of step")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(REPO)} is out of step with docs/results/*.json: "
                  "run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
