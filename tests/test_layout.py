"""The repository's layout never shadows the standard library or hides a package from tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_top_level_folder_is_an_importable_package() -> None:
    packages = sorted(path.parent.name for path in ROOT.glob("*/__init__.py"))
    assert packages == []


def test_python_started_from_the_root_imports_the_standard_library_operator() -> None:
    """`python -c` puts the current directory first on sys.path: the root must hold no module
    that a standard-library import would pick up instead."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import enum, operator, marserve, marserve_operator; print(operator.__file__)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stdlib = Path(subprocess.__file__).parent
    assert Path(completed.stdout.strip()).parent == stdlib
