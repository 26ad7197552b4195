"""`ImageClassifier`: ImageNet-style preprocessing, then the top classes with their probability.

Preprocessing is TorchServe's (resize 256, centre-crop 224, ImageNet normalisation) done with
PIL and torch; images that are not RGB are converted first instead of failing. The answer per
image is `{label: probability}` for the `topk` most likely classes (fewer if the model has fewer).
"""

from __future__ import annotations

from typing import Any

import torch

from marserve.handlers.image_transforms import imagenet_classification
from marserve.handlers.labels import map_class_to_label
from marserve.handlers.vision_handler import VisionHandler


class ImageClassifier(VisionHandler):
    """Classifies each image; labels come from `index_to_name.json` when the archive has one."""

    topk = 5
    image_processing = imagenet_classification()

    def set_max_result_classes(self, topk: int) -> None:
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        probabilities = torch.softmax(data, dim=1)
        k = min(self.topk, probabilities.shape[1])
        top_probs, top_classes = torch.topk(probabilities, k, dim=1)
        return map_class_to_label(top_probs.tolist(), self.mapping, top_classes.tolist())

    def describe_handle(self) -> dict[str, Any]:
        return {**super().describe_handle(), "topk": self.topk}
