"""One request as the front end hands it to a worker process, before any protocol's shape.

Every route decodes its protocol into this value; only the worker process turns it into the
dict TorchServe's `Service.predict` takes (`batch_element`), so no other layer ever sees that
shape and the value that crosses the process boundary is typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marserve.wire import pickled_by_fields


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Parameter:
    """One named input: a form field, a query parameter, the body, or one tensor."""

    name: str
    content_type: str
    value: bytes


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """The request id, the named inputs and the HTTP headers of one call."""

    request_id: str
    parameters: tuple[Parameter, ...]
    headers: tuple[tuple[str, str], ...]

    def batch_element(self) -> dict[str, Any]:
        """This request in the shape `Service.predict` takes (TorchServe's batch element)."""
        return {
            "requestId": self.request_id.encode(),
            "parameters": [
                {"name": p.name, "contentType": p.content_type, "value": p.value}
                for p in self.parameters
            ],
            "headers": [
                {
                    "name": k.encode(errors="surrogateescape"),
                    "value": v.encode(errors="surrogateescape"),
                }
                for k, v in self.headers
            ],
        }
