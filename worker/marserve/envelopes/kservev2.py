"""The `kservev2` envelope (Open Inference Protocol v2), batch-aware.

Each input tensor `{name, shape, datatype, data}` becomes one handler row with `data` reshaped to
`shape` (BYTES inputs pass their first element, as TorchServe does). The handler's output at the
same position answers that input: `{name, datatype, shape, data}` with data flattened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marserve.context import Context
from marserve.envelopes.base import BaseEnvelope, json_body

DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class KServeV2Envelope(BaseEnvelope):
    name = "kservev2"

    def __init__(self, handle_fn: Any) -> None:
        super().__init__(handle_fn)
        self._requests: dict[int, tuple[str | None, list[str]]] = {}

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        document = json_body(body)
        if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
            raise ValueError('the body must be a JSON object with an "inputs" list')
        rows = [_input_row(tensor) for tensor in document["inputs"]]
        request_id = document.get("id")
        self._requests[idx] = (
            None if request_id is None else str(request_id),
            [row["name"] for row in rows],
        )
        if self.context is not None:
            self.context.input_names = [
                name for _, names in self._requests.values() for name in names
            ]
        return rows

    def handle(self, data: Any, context: Context) -> Any:
        self._requests = {}
        return super().handle(data, context)

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        request_id, names = self._requests[idx]
        context = self.context
        assert context is not None
        model = context.manifest.get("model", {})
        return {
            "id": request_id if request_id is not None else context.get_request_id(idx),
            "model_name": model.get("modelName"),
            "model_version": model.get("modelVersion"),
            "outputs": [_output(item, name) for item, name in zip(outputs, names, strict=True)],
        }


def _input_row(tensor: Any) -> dict[str, Any]:
    if not isinstance(tensor, dict) or "data" not in tensor or "name" not in tensor:
        raise ValueError('each input must be an object with "name" and "data"')
    row = dict(tensor)
    if row.get("datatype") == "BYTES":
        row["data"] = row["data"][0]
    else:
        array = np.asarray(row["data"])
        if "shape" in row:
            array = array.reshape(tuple(row["shape"]))
        row["data"] = array.tolist()
    return row


def _output(item: Any, name: str) -> dict[str, Any]:
    array = np.asarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
    return {
        "name": name,
        "datatype": DATATYPES.get(array.dtype.name, "BYTES"),
        "shape": list(array.shape),
        "data": array.flatten().tolist(),
    }


KServev2Envelope = KServeV2Envelope
"""TorchServe's spelling of the class name, for handlers that import it."""
