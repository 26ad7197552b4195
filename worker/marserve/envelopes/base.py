"""The envelope contract: unwrap every request of a batch, run the handler once, wrap each answer.

TorchServe's `kserve` envelopes read only the batch's first request; marserve's envelopes unwrap
every request into a flat list of rows, call the handler once, and split its output back so each
request gets its own answer. The flow and method names are TorchServe's (`parse_input`,
`format_output`), so envelopes and tests written against its `BaseEnvelope` keep working.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from marserve.context import Context
from marserve.errors import BatchResponseMismatch, PredictionException

EntryPoint = Callable[[Any, Context], Any]


class BaseEnvelope:
    """Wraps a handler entry point; subclasses say how one request's body becomes rows and back.

    `handle` is TorchServe's: `parse_input`, the handler, then `format_output`, with empty input
    and empty output passed through. An envelope written for TorchServe, overriding those two
    methods, therefore works unchanged.
    """

    name = "base"

    def __init__(self, handle_fn: EntryPoint) -> None:
        self._handle_fn = handle_fn
        self.context: Any = None
        self._row_counts: list[int] = []

    def handle(self, data: Sequence[Any] | None, context: Any) -> Any:
        self.context = context
        if data:
            data = self.parse_input(data)
        results = self._handle_fn(data, context)
        if results:
            results = self.format_output(results)
        return results

    def parse_input(self, data: Sequence[Any]) -> list[Any]:
        """The rows of every request, in order, as one flat list for the handler."""
        try:
            pieces = [self.unwrap(self.payload(row), idx) for idx, row in enumerate(data)]
        except (KeyError, TypeError, ValueError) as error:
            raise PredictionException(
                f"{self.name} envelope: invalid request: {error}", 400
            ) from error
        self._row_counts = [len(piece) for piece in pieces]
        return [row for piece in pieces for row in piece]

    def format_output(self, data: Any) -> Any:
        """Splits the handler's list back per request and wraps each request's share."""
        if not isinstance(data, list):
            return data
        if len(data) != sum(self._row_counts):
            raise BatchResponseMismatch(
                f"handler returned {len(data)} items for the {sum(self._row_counts)} rows"
                f" the {self.name} envelope gave it"
            )
        answers = []
        start = 0
        for idx, count in enumerate(self._row_counts):
            answers.append(self.wrap(data[start : start + count], idx))
            start += count
        return answers

    def payload(self, row: Any) -> Any:
        """What one request of the batch carries for this envelope to unwrap."""
        return request_body(row)

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
