"""Tiny real models and real archives for tests: built here, never downloaded.

Every test that needs a model builds it with these helpers so outputs can be compared with the
model run directly in torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from support.tiny_cnn import TinyCNN
from support.tiny_mlp import TinyMLP

MLP_SOURCE_FILE = Path(__file__).with_name("tiny_mlp.py")


def make_mlp(seed: int = 0) -> torch.nn.Module:
    """An 8 -> 16 -> 4 MLP with deterministic weights, in eval mode."""
    torch.manual_seed(seed)
    return TinyMLP().eval()


def make_cnn(seed: int = 0) -> torch.nn.Module:
    """A small CNN on 3x32x32 images (4 classes) with deterministic weights, in eval mode."""
    torch.manual_seed(seed)
    return TinyCNN().eval()


def write_eager(model: torch.nn.Module, directory: Path) -> tuple[Path, Path]:
    """Writes `model.py` (the architecture) and `model.pth` (its state_dict); returns both."""
    directory.mkdir(parents=True, exist_ok=True)
    model_file = directory / "model.py"
    shutil.copyfile(MLP_SOURCE_FILE, model_file)
    weights = directory / "model.pth"
    torch.save(model.state_dict(), weights)
    return model_file, weights


def write_torchscript(model: torch.nn.Module, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.pt"
    torch.jit.script(model).save(str(path))
    return path


def write_onnx(model: torch.nn.Module, directory: Path) -> Path:
    """Exports with a dynamic batch axis so batched requests can run."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 8),),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        dynamo=False,
    )
    return path


def write_json(path: Path, content: Mapping[str, object] | Sequence[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def write_text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(content))
    return path


def torch_model_archiver(
    *,
    model_name: str,
    handler: str | Path,
    export_path: Path,
    version: str = "1.0",
    serialized_file: Path | None = None,
    model_file: Path | None = None,
    extra_files: Sequence[Path] = (),
    config_file: Path | None = None,
    requirements_file: Path | None = None,
    archive_format: str = "default",
) -> Path:
    """Runs the real `torch-model-archiver` from PyPI and returns the archive it wrote."""
    executable = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent))
    assert executable, "torch-model-archiver is not installed in this environment"
    export_path.mkdir(parents=True, exist_ok=True)
    command = [
        executable,
        "--model-name",
        model_name,
        "--version",
        version,
        "--handler",
        str(handler),
        "--export-path",
        str(export_path),
        "--archive-format",
        archive_format,
        "--force",
    ]
    optional = {
        "--serialized-file": serialized_file,
        "--model-file": model_file,
        "--config-file": config_file,
        "--requirements-file": requirements_file,
    }
    for flag, value in optional.items():
        if value is not None:
            command += [flag, str(value)]
    if extra_files:
        command += ["--extra-files", ",".join(str(path) for path in extra_files)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    suffix = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
    return export_path / f"{model_name}{suffix[archive_format]}"


def write_aoti_package(model: torch.nn.Module, directory: Path, example: torch.Tensor) -> Path:
    """Compiles `model` ahead of time with AOTInductor into `model.pt2` (batch axis dynamic).

    This really runs the C++ compiler: tens of seconds on a small machine.
    """
    directory.mkdir(parents=True, exist_ok=True)
    program = _export_with_dynamic_batch(model, example)
    path = directory / "model.pt2"
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return path


def write_aot_shared_library(
    model: torch.nn.Module, directory: Path, example: torch.Tensor
) -> Path:
    """TorchServe's legacy AOTInductor input: `model.so` from `torch._export.aot_compile`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.so"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch._export.aot_compile(
        model,
        (example,),
        dynamic_shapes={"x": {0: batch}},
        options={"aot_inductor.output_path": str(path)},
    )
    return path


def write_exported_program(model: torch.nn.Module, directory: Path, example: torch.Tensor) -> Path:
    """`model.pt2` from `torch.export.save`: an exported program, not compiled code."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.pt2"
    torch.export.save(_export_with_dynamic_batch(model, example), str(path))
    return path


def _export_with_dynamic_batch(
    model: torch.nn.Module, example: torch.Tensor
) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=1024)
    return torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
