"""The few image transforms the built-in vision handlers need, in PIL and plain torch.

They reproduce torchvision's `Resize(int)`, `CenterCrop`, `ToTensor` and `Normalize` for PIL
images so the built-in handlers work where torchvision is not installed (or cannot be: its
wheels are tied to one torch release). Handlers that bring torchvision transforms still work,
since a handler's `image_processing` is any callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, value: Any) -> Any:
        for transform in self.transforms:
            value = transform(value)
        return value


class ToRGB:
    """Grayscale, palette and RGBA images become RGB so 3-channel statistics apply."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")


class Resize:
    """Scales the shorter side to `size`, keeping the aspect ratio (bilinear)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = sorted((width, height))
        if short == self.size:
            return image
        new_long = int(self.size * long / short)
        new_size = (self.size, new_long) if width <= height else (new_long, self.size)
        return image.resize(new_size, Image.Resampling.BILINEAR)


class CenterCrop:
    """Cuts the central `size` x `size` square, padding with black when the image is smaller."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.size or height < self.size:
            canvas = Image.new(image.mode, (max(width, self.size), max(height, self.size)))
            offset = (max(self.size - width, 0) // 2, max(self.size - height, 0) // 2)
            canvas.paste(image, offset)
            image, (width, height) = canvas, canvas.size
        top = round((height - self.size) / 2.0)
        left = round((width - self.size) / 2.0)
        return image.crop((left, top, left + self.size, top + self.size))


class ToTensor:
    """HWC 8-bit image -> CHW float tensor in [0, 1]."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.array(image)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if tensor.dtype == torch.uint8:
            return tensor.float().div(255)
        return tensor.float()


class Normalize:
    """Per-channel `(x - mean) / std`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor - self.mean) / self.std


def imagenet_classification() -> Compose:
    """Resize 256, centre-crop 224, scale to [0, 1], ImageNet mean/std: TorchServe's pipeline."""
    return Compose(
        [ToRGB(), Resize(256), CenterCrop(224), ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
