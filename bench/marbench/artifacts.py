"""The benchmark's models, archives and request bodies, built once per run for both servers.

Archives come from the real `torch-model-archiver`, so TorchServe reads exactly what it would in
production and marserve reads the same bytes. Bodies are fixed files: every request of a point is
identical, for both servers.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from marbench.config import ModelYaml
from support import models

HANDLER_FILE = Path(__file__).parents[1] / "archive_files" / "bench_handler.py"


@dataclass(frozen=True)
class BenchModel:
    """One archived model: its MAR, the unpacked directory, the module and one request body."""

    name: str
    mar: Path
    extracted_dir: Path
    module: torch.nn.Module
    example_input: torch.Tensor
    body_file: Path
    content_type: str


def _mlp_input() -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, 8).unsqueeze(0)


def _png_body(directory: Path) -> tuple[Path, torch.Tensor]:
    """A fixed 32x32 RGB PNG and the tensor the handler decodes it to."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="RGB").save(buffer, format="PNG")
    path = directory / "image.png"
    path.write_bytes(buffer.getvalue())
    return path, (pixels.permute(2, 0, 1).float() / 255.0).unsqueeze(0)


def _extract(mar: Path, directory: Path) -> Path:
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(directory)
    return directory


def build(name: str, *, work_dir: Path, model_yaml: ModelYaml) -> BenchModel:
    """Builds model `name` (one of config.MODELS) into `work_dir/model-store/<name>.mar`."""
    source = work_dir / "sources" / name
    source.mkdir(parents=True, exist_ok=True)
    config_file = models.write_text(source / "model-config.yaml", model_yaml.render())
    store = work_dir / "model-store"
    if name == "cnn":
        module = models.make_cnn()
        serialized, model_file = models.write_torchscript(module, source), None
        body_file, example = _png_body(source)
        content_type = "image/png"
    else:
        module = models.make_mlp()
        if name == "mlp_eager":
            model_file, serialized = models.write_eager(module, source)
        else:
            serialized, model_file = models.write_torchscript(module, source), None
        example = _mlp_input()
        body_file = models.write_json(source / "input.json", example[0].tolist())
        content_type = "application/json"
    mar = models.torch_model_archiver(
        model_name=name,
        handler=HANDLER_FILE,
        export_path=store,
        serialized_file=serialized,
        model_file=model_file,
        config_file=config_file,
    )
    return BenchModel(
        name=name,
        mar=mar,
        extracted_dir=_extract(mar, work_dir / "extracted" / name),
        module=module,
        example_input=example,
        body_file=body_file,
        content_type=content_type,
    )


def expected_output(model: BenchModel) -> list[float]:
    """What a correct server answers for the body: the module run directly."""
    with torch.inference_mode():
        return [float(value) for value in model.module(model.example_input)[0]]


def parse_output(body: bytes) -> list[float]:
    return [float(value) for value in json.loads(body)]
