"""The typed outcome of one request in a batch: what `Service.predict` hands to the transport.

TorchServe returns socket bytes from `predict`; marserve returns these values instead so the
server (and any future transport) chooses the wire format. Bodies are already encoded bytes
because results cross a process boundary between the handler process and the HTTP front end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PredictionResult:
    """One request's answer: an HTTP-like status, encoded body, content type and extra headers."""

    request_id: str
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300
