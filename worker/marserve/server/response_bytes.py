"""HTTP/1.1 responses written as bytes, for the prediction path that answers without aiohttp.

A response is one status line, the headers the answer carries, its framing (`Content-Length`, or
chunked for a streamed answer) and `Date`, which HTTP/1.1 asks of every server with a clock; the
date string is made once a second, not per response.
"""

from __future__ import annotations

import email.utils
import http
import time
from collections.abc import Iterable

LAST_CHUNK = b"0\r\n\r\n"
# Framing is the server's to write: a handler's copy of these would contradict it.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in http.HTTPStatus}


class UnsafeHeaderError(ValueError):
    """A header name or value holds a line break, which would end the header block early."""


class DateHeader:
    """The `Date` header line, made anew only when the second changes."""

    def __init__(self) -> None:
        self._second = -1
        self._line = ""

    def line(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n"
        return self._line


def response_head(
    status: int,
    headers: Iterable[tuple[str, str]],
    *,
    length: int | None,
    keep_alive: bool,
    date: DateHeader,
) -> bytes:
    """The status line and headers; `length` None means a chunked body follows."""
    lines = []
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise UnsafeHeaderError(f"the response header {name!r} holds a line break")
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}\r\n")
    chunked = length is None
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    connection = "" if keep_alive else "Connection: close\r\n"
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n"
    return f"{status_line}{''.join(lines)}{framing}{date.line()}{connection}\r\n".encode()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; empty data is no chunk, since a 0-size chunk ends the body."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
