"""The JSON error body every marserve error carries: `{"code", "type", "message"}`.

The front end's HTTP errors, the Service's failed predictions and the worker process's failed
batches all answer with it, so it is built here once, with nothing but the standard library:
the worker process imports it without pulling in aiohttp.
"""

from __future__ import annotations

import json


def encode(code: int, error_type: str, message: str) -> bytes:
    """The UTF-8 JSON bytes of one error: its HTTP status, a short type name and the message."""
    return json.dumps({"code": code, "type": error_type, "message": message}).encode()
