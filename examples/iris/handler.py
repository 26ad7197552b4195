"""A TorchServe-style handler: JSON measurements in, class probabilities by name out.

It subclasses TorchServe's BaseHandler by its usual import path, which marserve resolves to its
own implementation, so the same file works in TorchServe and in marserve.
"""

from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler


class IrisHandler(BaseHandler):
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        rows = [row.get("data") or row.get("body") for row in data]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 4)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        names = self.mapping or {}
        probabilities = torch.softmax(data, dim=1).tolist()
        return [
            {names.get(str(index), str(index)): round(p, 4) for index, p in enumerate(row)}
            for row in probabilities
        ]
