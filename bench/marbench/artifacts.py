"""The benchmark's models, archives and request bodies, built once per run for both servers.

Archives come from the real `torch-model-archiver`, so TorchServe reads exactly what it would in
production and marserve reads the same bytes. Bodies are fixed files: every request of a point is
identical, for both servers.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from marbench import resnet
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


def _image_body(path: Path, pixels: torch.Tensor, *, image_format: str) -> torch.Tensor:
    """Writes `pixels` (HxWx3 uint8) as one image file; returns the tensor a handler decodes.

    The tensor is read back from the file, so a lossy format (JPEG) is compared with what a
    server really sees.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="RGB").save(buffer, format=image_format, quality=90)
    path.write_bytes(buffer.getvalue())
    image = Image.open(path).convert("RGB")
    decoded = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return (decoded.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255.0)[None]


def _png_pixels() -> torch.Tensor:
    """Fixed 32x32 RGB noise: the CNN's input."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)


def _photo_pixels(size: int = 224) -> torch.Tensor:
    """A fixed 224x224 RGB image with smooth gradients and mild noise.

    Pure noise would make a JPEG of about 100 KB; a photograph of this size is 15-30 KB, and so
    is this one, so the bytes on the wire and the decode cost are those of a real photo.
    """
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.0, 1.0, size)
    red = ramp.unsqueeze(0).expand(size, size)
    green = ramp.unsqueeze(1).expand(size, size)
    blue = (torch.sin(ramp * 12.0).unsqueeze(0) * torch.cos(ramp * 7.0).unsqueeze(1) + 1) / 2
    image = torch.stack([red, green, blue], dim=2) * 200 + 20
    noise = torch.randint(-12, 13, (size, size, 3), generator=generator)
    return (image + noise).clamp(0, 255).to(torch.uint8)


ImageModel = tuple[str, str, torch.nn.Module, torch.Tensor]
IMAGE_MODELS: dict[str, Callable[[], ImageModel]] = {
    "cnn": lambda: ("PNG", "image/png", models.make_cnn(), _png_pixels()),
    "resnet18": lambda: ("JPEG", "image/jpeg", resnet.make_resnet18(), _photo_pixels()),
}


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
    if name in IMAGE_MODELS:
        image_format, content_type, module, pixels = IMAGE_MODELS[name]()
        serialized, model_file = models.write_torchscript(module, source), None
        body_file = source / f"image.{image_format.lower()}"
        example = _image_body(body_file, pixels, image_format=image_format)
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
