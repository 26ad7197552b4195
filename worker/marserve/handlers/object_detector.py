"""`ObjectDetector`: boxes of the objects found in each image, with label and score.

The model follows torchvision's detection contract: for each image a mapping with `boxes`
(`[M, 4]`, x1 y1 x2 y2), `labels` and `scores`. Detections scoring below `threshold` (0.5) are
dropped; each kept one is answered as `{label: [x1, y1, x2, y2], "score": s}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marserve.handlers.image_transforms import Compose, ToTensor
from marserve.handlers.labels import label_for
from marserve.handlers.vision_handler import VisionHandler


class ObjectDetector(VisionHandler):
    """Detects objects; images are only scaled to [0, 1], as detection models expect."""

    threshold = 0.5
    image_processing = Compose([ToTensor()])

    def postprocess(self, data: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        return [self._detections(image) for image in data]

    def _detections(self, image: Mapping[str, Any]) -> list[dict[str, Any]]:
        keep = image["scores"] >= self.threshold
        boxes = image["boxes"][keep].tolist()
        labels = image["labels"][keep].tolist()
        scores = image["scores"][keep].tolist()
        return [
            {label_for(label, self.mapping): box, "score": score}
            for label, box, score in zip(labels, boxes, scores, strict=True)
        ]
