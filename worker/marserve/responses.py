"""Turning handler outputs and failures into `PredictionResult`s, the TorchServe way.

Final answers (`Service.predict`) and streamed partial answers share these rules: `str` is UTF-8
text, bytes go out as they are, tensors as `torch.save` bytes, anything else as JSON; the content
type, status and headers a handler set on the context win.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from marserve import error_body, indented_json
from marserve.context import Context
from marserve.results import PredictionResult

TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
JSON = "application/json"


class UnsupportedOutputError(TypeError):
    """A handler returned an item that is neither text, bytes, a tensor nor JSON-serialisable."""


def encode_body(value: Any) -> tuple[bytes, str]:
    """The bytes of one output item and the content type they imply."""
    if isinstance(value, str):
        return value.encode("utf-8"), TEXT
    if isinstance(value, bytes | bytearray):
        return bytes(value), BINARY
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue(), BINARY
    try:
        return indented_json.dumps(value), JSON
    except (TypeError, ValueError) as error:
        raise UnsupportedOutputError(
            f"unsupported model output type {type(value).__name__}: {error}"
        ) from error


def success(*, idx: int, request_id: str, value: Any, context: Context) -> PredictionResult:
    """Request `idx`'s answer with the status, content type and headers its handler chose."""
    body, implied_type = encode_body(value)
    status = 200
    headers: dict[str, str] = {}
    if context.request_processor is not None and idx < len(context.request_processor):
        status = context.get_response_status(idx)[0] or 200
        headers = {str(k): str(v) for k, v in context.get_response_headers(idx).items()}
    content_type = _pop_content_type(headers) or implied_type
    return PredictionResult(
        request_id=request_id,
        status=int(status),
        body=body,
        content_type=content_type,
        headers=headers,
    )


def failure(*, request_id: str, code: int, error_type: str, message: str) -> PredictionResult:
    """A failed request's result, with the JSON error body every marserve error carries."""
    body = error_body.encode(code, error_type, message)
    return PredictionResult(request_id=request_id, status=code, body=body, content_type=JSON)


def _pop_content_type(headers: dict[str, str]) -> str | None:
    for key in list(headers):
        if key.lower() == "content-type":
            return headers.pop(key) or None
    return None
