"""The `json` envelope (TF-Serving style): `{"instances": [...]}` in, `{"predictions": [...]}` out.

Instances of all requests in the batch form one list for the handler; `{"b64": "..."}` values are
decoded to bytes first, as TF-Serving clients send binary inputs that way.
"""

from __future__ import annotations

import base64
from typing import Any

from marserve.envelopes.base import BaseEnvelope, json_body


class JSONEnvelope(BaseEnvelope):
    name = "json"

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        return [decode_b64(instance) for instance in instances(body)]

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        return {"predictions": outputs}


def instances(body: Any) -> list[Any]:
    """The `instances` list of a request body, with a message saying what was wrong otherwise."""
    document = json_body(body)
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise ValueError('the body must be a JSON object with an "instances" list')
    return list(document["instances"])


def decode_b64(value: Any) -> Any:
    """`{"b64": text}` becomes bytes, at the top of an instance or as one of its named values."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {key: decode_b64(item) for key, item in value.items()}
    return value
