"""`VisionHandler`: the base of the image handlers, turning request images into one batch tensor.

Each request row carries an image as bytes (or base64 text) that is decoded with PIL and passed
through the subclass's `image_processing`, or as a nested list that is taken as the tensor.
Explanations are integrated gradients with 15 steps, the numbers TorchServe gets from Captum.
"""

from __future__ import annotations

import base64
import binascii
import io
from abc import ABC
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from marserve.context import Context
from marserve.errors import PredictionException
from marserve.handlers.attribution import integrated_gradients
from marserve.handlers.base_handler import BaseHandler
from marserve.handlers.image_transforms import ToTensor
from marserve.handlers.timer import timed


class VisionHandler(BaseHandler, ABC):
    """Image requests in, a `[N, C, H, W]` tensor on the model's device out."""

    image_processing: Callable[[Image.Image], torch.Tensor] = ToTensor()

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        if not context.system_properties.get("limit_max_image_pixels", True):
            Image.MAX_IMAGE_PIXELS = None

    @timed
    def preprocess(self, data: Sequence[Any]) -> torch.Tensor:
        images = [self._image_tensor(row) for row in data]
        return torch.stack(images).to(self.device)

    def _image_tensor(self, row: Any) -> torch.Tensor:
        image = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
        if isinstance(image, str):
            try:
                image = base64.b64decode(image, validate=True)
            except binascii.Error as error:
                raise PredictionException("the image text is not valid base64", 400) from error
        if isinstance(image, bytes | bytearray):
            try:
                decoded = Image.open(io.BytesIO(image))
            except UnidentifiedImageError as error:
                raise PredictionException("the request body is not an image", 400) from error
            except Image.DecompressionBombError as error:
                raise PredictionException(f"the image is too large: {error}", 413) from error
            return self.image_processing(decoded)
        return torch.as_tensor(image, dtype=torch.float32)

    def get_insights(self, tensor_data: torch.Tensor, _inputs: Any, target: Any = 0) -> Any:
        """Per-image attributions towards class `target` (the first request's `target` field)."""
        try:
            target_class = int(target)
        except (TypeError, ValueError) as error:
            raise PredictionException(
                f"target must be a class index, not {target!r}", 400
            ) from error
        return integrated_gradients(
            self.model, tensor_data, target=target_class, n_steps=15
        ).tolist()
