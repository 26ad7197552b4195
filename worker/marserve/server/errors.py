"""Errors the user can act on, in the body each protocol defines.

TorchServe's routes answer `{"code", "type", "message"}`; the Open Inference Protocol's answer
`{"error": message}`, which its clients (tritonclient, the KServe SDK) decode.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

from aiohttp import web

from marserve import error_body


class ErrorFormat(enum.Enum):
    """The error body a route's protocol defines."""

    TORCHSERVE = "torchserve"
    OPEN_INFERENCE = "open-inference"


def error_format_for(path: str, formats: Mapping[str, ErrorFormat]) -> ErrorFormat:
    """The error body of the protocol whose path prefix (e.g. `/v2`) `path` falls under."""
    for prefix, chosen in formats.items():
        if path == prefix or path.startswith(prefix + "/"):
            return chosen
    return ErrorFormat.TORCHSERVE


class ServingError(Exception):
    """A request failed with an HTTP status, a short type name and a message for the user."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})

    def response(self, error_format: ErrorFormat = ErrorFormat.TORCHSERVE) -> web.Response:
        return error_response(
            self.status,
            self.error_type,
            self.message,
            headers=self.headers,
            error_format=error_format,
        )


def error_response(
    status: int,
    error_type: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    error_format: ErrorFormat = ErrorFormat.TORCHSERVE,
) -> web.Response:
    return web.Response(
        status=status,
        body=encode_error(status, error_type, message, error_format),
        content_type="application/json",
        headers=headers,
    )


def encode_error(status: int, error_type: str, message: str, error_format: ErrorFormat) -> bytes:
    """The JSON error body of the given protocol."""
    if error_format is ErrorFormat.OPEN_INFERENCE:
        return json.dumps({"error": message}).encode()
    return error_body.encode(status, error_type, message)


def model_not_found(model: str, version: str | None = None) -> ServingError:
    """TorchServe's 404 for an unknown model, or a known model without that version."""
    if version is None:
        return ServingError(404, "ModelNotFoundException", f"Model not found: {model}")
    return ServingError(
        404,
        "ModelVersionNotFoundException",
        f"Model version: {version} does not exist for model: {model}",
    )


def worker_died(model: str, detail: str) -> ServingError:
    return ServingError(
        503, "WorkerDiedException", f"The worker for model {model!r} died: {detail}; retry"
    )


def streamed_answer(model: str, *, protocol: str, instead: str | None = None) -> ServingError:
    """A streaming handler called through a protocol whose answer is one document: refusing is
    clearer than answering with the first chunk only. `instead` names the call that streams."""
    return ServingError(
        501,
        "StreamingNotSupported",
        f"Model {model!r} streams its answer, which {protocol} cannot carry in one response; "
        f"call {instead or f'POST /predictions/{model}'} to receive the stream",
    )
