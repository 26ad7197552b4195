"""The envelope contract: unwrap every request of a batch, run the handler once, wrap each answer.

TorchServe's `kserve` envelopes read only the batch's first request; marserve's envelopes unwrap
every request into a flat list of rows, call the handler once, and split its output back so each
request gets its own answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from marserve.context import Context
from marserve.errors import BatchResponseMismatch, PredictionException

EntryPoint = Callable[[Any, Context], Any]


class BaseEnvelope:
    """Wraps a handler entry point; subclasses say how one request's body becomes rows and back."""

    name = "base"

    def __init__(self, handle_fn: EntryPoint) -> None:
        self._handle_fn = handle_fn
        self.context: Context | None = None

    def handle(self, data: Sequence[Any] | None, context: Context) -> Any:
        self.context = context
        if not data:
            return self._handle_fn(data, context)
        try:
            pieces = [self.unwrap(request_body(row), idx) for idx, row in enumerate(data)]
        except (KeyError, TypeError, ValueError) as error:
            raise PredictionException(
                f"{self.name} envelope: invalid request: {error}", 400
            ) from error
        rows = [row for piece in pieces for row in piece]
        output = self._handle_fn(rows, context)
        if not isinstance(output, list):
            return output
        if len(output) != len(rows):
            raise BatchResponseMismatch(
                f"handler returned {len(output)} items for the {len(rows)} rows"
                f" the {self.name} envelope gave it"
            )
        answers = []
        start = 0
        for idx, piece in enumerate(pieces):
            answers.append(self.wrap(output[start : start + len(piece)], idx))
            start += len(piece)
        return answers

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        """The rows request `idx` contributes to the handler's input."""
        raise NotImplementedError

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        """Request `idx`'s answer, built from the handler outputs for its rows."""
        raise NotImplementedError


def request_body(row: Any) -> Any:
    """A request's payload: form field `data` or the raw `body`, as handlers read it."""
    if isinstance(row, dict):
        value = row.get("data")
        return value if value is not None else row.get("body")
    return row


def json_body(body: Any) -> Any:
    """The request body as a JSON value, whether or not the Service already decoded it."""
    if isinstance(body, bytes | bytearray):
        return json.loads(body.decode("utf-8"))
    if isinstance(body, str):
        return json.loads(body)
    if body is None:
        raise ValueError("the request has no body")
    return body
