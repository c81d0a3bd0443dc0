"""The documentation is in step with the results: README size and links, result provenance, results page."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
README = REPO / "README.md"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _report():
    spec = importlib.util.spec_from_file_location("_report", REPO / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*#*$", text, flags=re.M)}


def _relative_links(md: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    links = [a or b for a, b in LINK.findall(text)]
    return [l for l in links if not re.match(r"^[a-z][a-z0-9+.-]*:", l)]  # no http:, mailto:, ...


def test_results_page_is_what_report_writes():
    page = REPO / "docs" / "results.md"
    assert page.exists(), "docs/results.md is missing: run python benchmarks/report.py"
    assert page.read_text(encoding="utf-8") == _report().render(RESULTS), (
        "docs/results.md is out of step with docs/results/*.json: run python benchmarks/report.py")


def test_report_check_flags_a_changed_result(tmp_path):
    report = _report()
    for p in RESULTS.glob("*.json"):
        (tmp_path / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    before = report.render(tmp_path)
    name = sorted(tmp_path.glob("ablation_*.json"))[0]
    data = json.loads(name.read_text(encoding="utf-8"))
    data["random_walker_init"]["mean"] += 0.1
    name.write_text(json.dumps(data), encoding="utf-8")
    assert report.render(tmp_path) != before


def test_readme_is_at_most_15_kB():
    size = len(README.read_bytes())
    assert size <= 15_000, f"README.md is {size} bytes; the limit is 15,000 (move detail to docs/)"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_result_has_provenance(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    prov = data.get("provenance") if isinstance(data, dict) else None
    assert isinstance(prov, dict), f"{path.name} has no provenance object"
    for field in ("commit", "machine", "command", "date"):
        assert isinstance(prov.get(field), str) and prov[field].strip(), f"{path.name}: provenance.{field} missing"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prov["date"]), f"{path.name}: date {prov['date']!r} is not YYYY-MM-DD"
    assert re.fullmatch(r"[0-9a-f]{7,40}", prov["commit"]), f"{path.name}: commit {prov['commit']!r} is not a hash"


def test_results_have_stable_names():
    staged = [p.name for p in RESULTS.iterdir()
              if re.search(r"_(current|margin|ridge|now|boxrule|organpaths|table)(_|\.)", p.name)
              or p.name.startswith(("cpu_", "gpu_h100_"))]
    assert not staged, f"stage-named result files: {staged}"


@pytest.mark.parametrize("md", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(md):
    missing = []
    for link in _relative_links(md):
        target, _, anchor = link.partition("#")
        path = (md.parent / target).resolve() if target else md
        if not path.exists():
            missing.append(link)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            missing.append(link)
    assert not missing, f"{md.relative_to(REPO)}: links to missing files or headings: {missing}"


def test_ci_runs_the_readme_test_command():
    # CI must run what a newcomer runs: the README's set-up command for the tests, verbatim
    readme = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    assert test_command in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
