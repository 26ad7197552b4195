"""The `kserve` envelope (KServe v1 protocol), batch-aware: every request's instances are served.

A request whose `explain` header is "True" gets `{"explanations": ...}`, others get
`{"predictions": ...}`.
"""

from __future__ import annotations

from typing import Any

from marserve.context import request_header
from marserve.envelopes.base import BaseEnvelope
from marserve.envelopes.json import instances


class KServeEnvelope(BaseEnvelope):
    name = "kserve"

    def unwrap(self, body: Any, idx: int) -> list[Any]:
        return instances(body)

    def wrap(self, outputs: list[Any], idx: int) -> Any:
        explain = request_header(self.context, idx, "explain")
        return {"explanations" if explain == "True" else "predictions": outputs}
