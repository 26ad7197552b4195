"""The `json` envelope (TF-Serving style): `{"instances": [...]}` in, `{"predictions": [...]}` out.

Instances of all requests in the batch form one list for the handler; `{"b64": "..."}` values are
decoded to bytes first, as TF-Serving clients send binary inputs that way. As in TorchServe, a
request row without `data` or `body` is itself the document, and each answer is the JSON text
(which marserve's own context also labels `application/json` for the HTTP response).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from marserve.context import Context
from marserve.envelopes.base import BaseEnvelope, json_body
from marserve.responses import JSON


class JSONEnvelope(BaseEnvelope):
    name = "json"

    def payload(self, row: Any) -> Any:
        if isinstance(row, dict):
            return row.get("data") or row.get("body") or row
        return row

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        return [decode_b64(instance) for instance in instances(body)]

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        context = self.context
        if (
            isinstance(context, Context)
            and context.request_processor
            and context.get_response_content_type(idx) is None
        ):
            context.set_response_content_type(idx, JSON)
        return json.dumps({"predictions": outputs})


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
