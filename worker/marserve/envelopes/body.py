"""The `body` envelope: the handler sees each request's payload, not its `{"body": ...}` row."""

from __future__ import annotations

from typing import Any

from marserve.envelopes.base import BaseEnvelope


class BodyEnvelope(BaseEnvelope):
    name = "body"

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        return [body]

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        return outputs[0]
