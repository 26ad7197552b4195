"""Helpers for the handler and model-loading tests: contexts, request headers, images, models.

They build the same `Context` the worker builds, so the handlers under test see exactly what they
see in production.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from marserve.context import Context, RequestProcessor
from marserve.handler_metrics import HandlerMetrics


def make_context(
    model_dir: Path,
    *,
    serialized_file: str | None = None,
    model_file: str | None = None,
    handler: str = "base_handler",
    model_yaml_config: Mapping[str, Any] | None = None,
    gpu_id: int | None = None,
    limit_max_image_pixels: bool = True,
) -> Context:
    """A context for a model in `model_dir` whose manifest names the given files."""
    model: dict[str, Any] = {"modelName": "tiny", "modelVersion": "1.0", "handler": handler}
    if serialized_file is not None:
        model["serializedFile"] = serialized_file
    if model_file is not None:
        model["modelFile"] = model_file
    return Context(
        "tiny",
        str(model_dir),
        {"runtime": "python", "model": model},
        1,
        gpu_id,
        limit_max_image_pixels=limit_max_image_pixels,
        metrics=HandlerMetrics("tiny"),
        model_yaml_config=model_yaml_config,
    )


def with_headers(context: Context, headers: Sequence[Mapping[str, str]]) -> Context:
    """Sets the current batch: one request per header mapping."""
    context.request_processor = [RequestProcessor(dict(h)) for h in headers]
    context.request_ids = {i: f"r{i}" for i in range(len(headers))}
    return context


def image_bytes(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def random_image(width: int, height: int, *, seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def imagenet_reference(image: Image.Image) -> torch.Tensor:
    """TorchServe's classifier preprocessing written out independently with PIL and numpy."""
    image = image.convert("RGB")
    width, height = image.size
    scale = 256 / min(width, height)
    size = (256, int(height * scale)) if width <= height else (int(width * scale), 256)
    pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255
    top = round((pixels.shape[0] - 224) / 2)
    left = round((pixels.shape[1] - 224) / 2)
    crop = pixels[top : top + 224, left : left + 224]
    normalized = (crop - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return torch.from_numpy(normalized.astype(np.float32)).permute(2, 0, 1)


class TinySegmenter(torch.nn.Module):
    """A 1x1 convolution giving 3 class scores per pixel, under "out" like torchvision's models."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, 3, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(x)}


class FixedDetector(torch.nn.Module):
    """Three detections per image whose scores depend on the image's mean brightness."""

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        results: list[dict[str, torch.Tensor]] = []
        for image in images:
            brightness = image.mean()
            results.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 2.0, 3.0, 4.0], [5.0] * 4]),
                    "labels": torch.tensor([1, 2, 3]),
                    "scores": torch.stack([brightness, 1 - brightness, torch.tensor(0.5)]),
                }
            )
        return results


class InferenceModeProbe(torch.nn.Module):
    """Returns its input doubled and whether it ran under torch.inference_mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flag = torch.full((x.shape[0], 1), float(torch.is_inference_mode_enabled()))
        return torch.cat([x * 2, flag], dim=1)
