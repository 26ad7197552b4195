"""The one handler every benchmark archive carries, served unchanged by marserve and TorchServe.

JSON bodies (a list of floats) feed the MLP, PNG bodies (3x32x32) the CNN and JPEG bodies
(3x224x224) the ResNet-18. Each batch adds one to the `BatchesHandled` counter and its size to
`RequestsHandled`, so both servers report their batching the same way: average batch size =
requests handled / batches.
"""

import io
import json

import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler

IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff")  # PNG, JPEG


def _to_tensor(value):
    if isinstance(value, (bytes, bytearray)) and bytes(value[:4]).startswith(IMAGE_SIGNATURES):
        image = Image.open(io.BytesIO(value)).convert("RGB")
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255.0
    if isinstance(value, (bytes, bytearray, str)):
        value = json.loads(value)
    return torch.tensor(value, dtype=torch.float32)


class BenchHandler(BaseHandler):
    def preprocess(self, data):
        self.context.metrics.add_counter("BatchesHandled", 1)
        self.context.metrics.add_counter("RequestsHandled", len(data))
        rows = [row.get("data") if row.get("data") is not None else row.get("body") for row in data]
        return torch.stack([_to_tensor(row) for row in rows]).to(self.device)
