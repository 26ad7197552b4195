"""The chart's generated parts are what scripts/generate_chart.py writes from marserve.contract:
a rename in the contract that was not carried into the chart fails here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from support import tools

GENERATOR = tools.REPO_ROOT / "scripts" / "generate_chart.py"
BLOCK = re.compile(
    r"(>>> generated: (?P<name>[\w-]+).*?\n).*?(\n[^\n]*<<< generated: (?P=name))", re.S
)


def _generate_into(chart: Path) -> None:
    subprocess.run(
        [sys.executable, GENERATOR, "--chart", chart],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _differences(left: Path, right: Path) -> list[str]:
    files = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    files |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    return sorted(
        str(f)
        for f in files
        if not (left / f).is_file()
        or not (right / f).is_file()
        or (left / f).read_bytes() != (right / f).read_bytes()
    )


def test_the_committed_chart_is_what_the_generator_writes(tmp_path: Path) -> None:
    chart = tmp_path / "marserve"
    shutil.copytree(tools.CHART_DIR, chart)
    _generate_into(chart)
    drifted = _differences(tools.CHART_DIR, chart)
    assert drifted == [], f"{drifted} differ from marserve.contract: run `make chart`"


def test_the_generator_rewrites_every_generated_part(tmp_path: Path) -> None:
    chart = tmp_path / "marserve"
    shutil.copytree(tools.CHART_DIR, chart)
    (chart / "files" / "dashboard.json").write_text("{}\n")
    emptied = 0
    for path in chart.rglob("*"):
        if path.is_file():
            text, count = BLOCK.subn(r"\1stale\3", path.read_text())
            path.write_text(text)
            emptied += count
    assert emptied >= 6
    assert _differences(tools.CHART_DIR, chart) != []
    _generate_into(chart)
    assert _differences(tools.CHART_DIR, chart) == []
