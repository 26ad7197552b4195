"""Plain `http(s)://` archives, fetched with the standard library.

An optional `Authorization` header value comes from the environment (the model's Secret), so a
token never appears in the URI, the pod spec or a status message.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from marserve.archive.transfer import CHUNK_BYTES, Sink, StatusError, TransientError
from marserve.contract import EXTRACT_ENV

_TRANSIENT_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class HttpObject:
    url: str

    def fetch(self, sink: Sink, *, offset: int, timeout_s: float) -> None:
        headers = {"User-Agent": "marserve-extract"}
        authorization = os.environ.get(EXTRACT_ENV.archive_authorization)
        if authorization:
            headers["Authorization"] = authorization
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(self.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                start = offset if _resumes(response, offset) else 0
                declared = response.headers.get("Content-Length")
                total = start + int(declared) if declared and declared.isdigit() else None
                with sink.receive(start=start, total=total) as receiver:
                    while chunk := response.read(CHUNK_BYTES):
                        receiver.write(chunk)
        except urllib.error.HTTPError as error:
            raise StatusError(error.code, str(error.reason)) from error
        except _TRANSIENT_ERRORS as error:
            reason = getattr(error, "reason", None) or error
            raise TransientError(f"{type(error).__name__}: {reason}") from error


def _resumes(response: Any, offset: int) -> bool:
    """Whether the server sent exactly the bytes from `offset` on (206 with a matching range)."""
    content_range = response.headers.get("Content-Range", "")
    return bool(
        offset
        and response.status == HTTPStatus.PARTIAL_CONTENT
        and content_range.startswith(f"bytes {offset}-")
    )
