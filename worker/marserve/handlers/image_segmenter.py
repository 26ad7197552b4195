"""`ImageSegmenter`: the most likely class of every pixel, with its probability.

The model returns `[N, K, H, W]` scores, either directly or under `"out"` as torchvision's
segmentation models do. The answer per image is an `[H, W, 2]` list of `[class, probability]`,
TorchServe's compact form (all K scores per pixel would make responses huge).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from marserve.handlers.image_transforms import imagenet_classification
from marserve.handlers.vision_handler import VisionHandler


class ImageSegmenter(VisionHandler):
    """Segments each image with ImageNet-style preprocessing."""

    image_processing = imagenet_classification()

    def postprocess(self, data: Any) -> list[Any]:
        scores = data["out"] if isinstance(data, Mapping) else data
        best = torch.softmax(scores, dim=1).max(dim=1)
        pairs = torch.stack([best.indices.to(best.values.dtype), best.values], dim=3)
        result: list[Any] = pairs.tolist()
        return result
