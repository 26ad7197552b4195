"""TorchServe 0.12.0's own handler unit tests, run unchanged against marserve.

The tests ship inside the `torchserve` wheel (`ts/torch_handler/unit_tests/`). They are extracted
to a temporary folder (never into this repository) at the depth TorchServe's repository holds them,
because they find example files relative to their own path, and run by pytest in a subprocess where
`marserve.compat.pytest_plugin` makes `ts.*` resolve to marserve.

Two of them need torchvision and TorchServe's `examples/` folder, which the wheel does not ship.
They run where torchvision imports (`make compat`), against stand-ins written here at the paths
they read: a ResNet-18 `model.py` with deterministic weights put where the pretrained ones would be
downloaded to, an MNIST-style digit model and handler, and noise pictures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import models, vision

REQUIREMENT = "torchserve==0.12.0"
WHEEL_CACHE = Path(sys.prefix) / "torchserve-wheel"
UNIT_TESTS = "ts/torch_handler/unit_tests/"
EXTRACTED = Path("ts_wheel", "torch_handler", "unit_tests")
"""Where the unit tests go: as deep as in TorchServe's repository, under a folder not named `ts`,
so that `ts` stays marserve's when the repository is on `sys.path`."""

NOT_RUN = {
    "test_image_segmenter.py": (
        "copies model code from TorchServe's examples/ folder (not in the wheel) and downloads "
        "FCN-ResNet101 weights whose model is torchvision's"
    ),
    "test_object_detector.py": (
        "copies model code from TorchServe's examples/ folder (not in the wheel) and downloads "
        "Faster R-CNN weights whose model is torchvision's"
    ),
}
"""Test files not run anywhere, with the reason."""


@dataclass(frozen=True)
class Suite:
    """Test files run together, the tests that pass, and a `-k` expression that leaves out what
    cannot pass here (pytest's --deselect matches name prefixes: `test_handle` would take
    `test_handle_explain` with it)."""

    files: tuple[str, ...]
    expected_passes: frozenset[str]
    left_out: str = ""


CORE = Suite(
    files=("test_base_handler.py", "test_envelopes.py"),
    expected_passes=frozenset(
        {
            "test_base_handler.py::test_single_handle",
            "test_base_handler.py::test_batch_handle",
            "test_base_handler.py::"
            "test_inference_with_profiler_works_with_custom_initialize_method",
            "test_envelopes.py::test_json",
            "test_envelopes.py::test_json_batch",
            "test_envelopes.py::test_json_double_batch",
            "test_envelopes.py::test_body",
            "test_envelopes.py::test_binary",
        }
    ),
)

VISION = Suite(
    files=("test_image_classifier.py", "test_mnist_kf.py"),
    expected_passes=frozenset(
        {
            "test_image_classifier.py::test_handle_explain",
            "test_mnist_kf.py::test_handle",
            "test_mnist_kf.py::test_handle_kf",
            "test_mnist_kf.py::test_handle_kfv2",
        }
    ),
    # test_image_classifier.py::test_handle expects the ImageNet label 'tiger_cat' for
    # TorchServe's kitten photo, which only the pretrained ResNet-18 weights give; the tests
    # download them, and never do here.
    left_out="not (test_image_classifier and test_handle and not test_handle_explain)",
)


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


def extract_unit_tests(wheel: Path, repository: Path) -> Path:
    """Writes the wheel's unit tests to `EXTRACTED` under `repository`; returns their folder."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(UNIT_TESTS) or name.endswith("/"):
                continue
            relative = Path(name.removeprefix(UNIT_TESTS))
            assert ".." not in relative.parts, name
            target = repository / EXTRACTED / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    return repository / EXTRACTED


def write_example_stand_ins(repository: Path) -> None:
    """The `examples/` files and the cached weights that the torchvision tests read."""
    from torchvision.models.resnet import ResNet18_Weights

    classifier = repository / "examples" / "image_classifier"
    resnet = classifier / "resnet_18"
    cached_weights = repository / ".cache" / Path(ResNet18_Weights.DEFAULT.url).name
    vision.write_model(resnet / "model.py", source=vision.RESNET18_MODEL, weights=cached_weights)
    labels = {str(index): ["n0", f"class {index}"] for index in range(1000)}
    models.write_json(resnet / "index_to_name.json", labels)
    vision.write_image(classifier / "resnet_152_batch" / "images" / "kitten.jpg", size=(320, 240))
    mnist = classifier / "mnist"
    vision.write_model(
        mnist / "mnist.py", source=vision.DIGIT_MODEL, weights=mnist / "mnist_cnn.pt"
    )
    models.write_text(mnist / "mnist_handler.py", vision.DIGIT_HANDLER)
    vision.write_image(mnist / "test_data" / "0.png", size=(28, 28), mode="L")


@pytest.mark.parametrize(
    "suite", [CORE, pytest.param(VISION, marks=vision.MARKS)], ids=["core", "vision"]
)
def test_torchserve_handler_unit_tests_pass(
    torchserve_wheel: Path, tmp_path: Path, suite: Suite
) -> None:
    repository = tmp_path / "torchserve"
    unit_tests = extract_unit_tests(torchserve_wheel, repository)
    shipped = {path.name for path in unit_tests.glob("test_*.py")}
    assert shipped == {*CORE.files, *VISION.files, *NOT_RUN}
    if suite is VISION:
        write_example_stand_ins(repository)
    left_out = ["-k", suite.left_out] if suite.left_out else []
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
            *left_out,
            *(str(EXTRACTED / name) for name in suite.files),
        ],
        cwd=repository,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "ts: marserve's TorchServe-compatible modules" in output
    passed = {
        line.split()[1].removeprefix(f"{EXTRACTED}/")
        for line in output.splitlines()
        if line.startswith("PASSED ")
    }
    assert passed == suite.expected_passes, output
