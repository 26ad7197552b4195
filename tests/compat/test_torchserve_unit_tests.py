"""TorchServe 0.12.0's own handler unit tests, run unchanged against marserve.

The tests ship inside the `torchserve` wheel (`ts/torch_handler/unit_tests/`). They are extracted
to a temporary folder (never into this repository) and run by pytest in a subprocess where
`marserve.compat.pytest_plugin` makes `ts.*` resolve to marserve.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REQUIREMENT = "torchserve==0.12.0"
WHEEL_CACHE = Path(sys.prefix) / "torchserve-wheel"
UNIT_TESTS = "ts/torch_handler/unit_tests/"

DESELECTED = {
    "test_image_classifier.py": (
        "imports torchvision (not installable beside this CPU torch) and reads images and "
        "model code from TorchServe's examples/ folder, which the wheel does not ship"
    ),
    "test_mnist_kf.py": (
        "imports torchvision and the MNIST example handler from TorchServe's examples/ folder"
    ),
    "test_image_segmenter.py": (
        "copies model code from TorchServe's examples/ folder (not in the wheel) and downloads "
        "FCN-ResNet101 weights whose model is torchvision's"
    ),
    "test_object_detector.py": (
        "copies model code from TorchServe's examples/ folder (not in the wheel) and downloads "
        "Faster R-CNN weights whose model is torchvision's"
    ),
}
"""Test files not run here, with the reason."""

EXPECTED_PASSES = {
    "unit_tests/test_base_handler.py::test_single_handle",
    "unit_tests/test_base_handler.py::test_batch_handle",
    "unit_tests/test_base_handler.py::"
    "test_inference_with_profiler_works_with_custom_initialize_method",
    "unit_tests/test_envelopes.py::test_json",
    "unit_tests/test_envelopes.py::test_json_batch",
    "unit_tests/test_envelopes.py::test_json_double_batch",
    "unit_tests/test_envelopes.py::test_body",
    "unit_tests/test_envelopes.py::test_binary",
}


@pytest.fixture(scope="module")
def torchserve_wheel() -> Path:
    """The wheel from the cache, downloaded once; the test skips when no index answers."""
    cached = sorted(WHEEL_CACHE.glob("torchserve-0.12.0-*.whl"))
    if cached:
        return cached[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    try:
        completed = subprocess.run(
            [*command, "-d", str(WHEEL_CACHE), REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package index did not deliver {REQUIREMENT} within 300 s")
    cached = sorted(WHEEL_CACHE.glob("torchserve-0.12.0-*.whl"))
    if completed.returncode != 0 or not cached:
        reason = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download {REQUIREMENT}: {reason}")
    return cached[0]


def extract_unit_tests(wheel: Path, destination: Path) -> Path:
    """Writes the wheel's `unit_tests/` package under `destination` and returns its folder."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(UNIT_TESTS) or name.endswith("/"):
                continue
            relative = Path("unit_tests", name.removeprefix(UNIT_TESTS))
            assert ".." not in relative.parts, name
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    return destination / "unit_tests"


def test_torchserve_handler_unit_tests_pass(torchserve_wheel: Path, tmp_path: Path) -> None:
    unit_tests = extract_unit_tests(torchserve_wheel, tmp_path)
    assert set(DESELECTED) < {path.name for path in unit_tests.glob("test_*.py")}
    ignored = [f"--ignore=unit_tests/{name}" for name in DESELECTED]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "marserve.compat.pytest_plugin",
            "-rA",
            *ignored,
            "unit_tests",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "ts: marserve's TorchServe-compatible modules" in output
    passed = {line.split()[1] for line in output.splitlines() if line.startswith("PASSED ")}
    assert passed == EXPECTED_PASSES, output
