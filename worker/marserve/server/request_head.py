"""The head of a plain HTTP/1.1 request, read strictly enough that aiohttp would read it alike.

The inference port answers most predictions without aiohttp (see `inference_connection.py`).
That is safe only for requests whose meaning no two HTTP parsers could disagree on, so this reader
accepts a narrow grammar and says None to anything outside it: another HTTP version, a folded or
malformed header line, control bytes, a header block over aiohttp's limits, a body framed by
anything but one decimal `Content-Length`, `Expect`, `Upgrade`, or a form body (which needs
aiohttp's multipart reader). None hands the connection to aiohttp from this request on, which
serves it, or refuses it, exactly as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass

# aiohttp's default limits on one request line or header line and on the number of headers.
MAX_LINE = 8190
MAX_HEADERS = 128
# RFC 9110 token characters (header names); a name with anything else is not plain.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Field-value bytes llhttp accepts in strict mode: tab, visible ASCII, space and obs-text.
_VALUE = bytes([9, *range(32, 127), *range(128, 256)])
_FORMS = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
# Headers that change how a message is framed or answered; any of them sends it to aiohttp.
_NOT_PLAIN = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
# Headers read here; a second copy of one makes the request not plain.
_READ = frozenset({b"content-length", b"content-type", b"x-request-id", b"authorization",
                   b"connection"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the prediction path reads from a plain request head."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    content_length: int
    content_type: str
    request_id: str
    authorization: str
    keep_alive: bool


class _NotPlainError(Exception):
    """Raised inside the reader: the request is aiohttp's to read."""


def parse_head(head: bytes) -> RequestHead | None:
    """The head (without its closing blank line) of a plain HTTP/1.1 request, or None."""
    try:
        return _read(head)
    except _NotPlainError:
        return None


def _read(head: bytes) -> RequestHead:
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise _NotPlainError
    method, target = _request_line(lines[0])
    fields = _Fields()
    headers = tuple(fields.read(line) for line in lines[1:])
    return RequestHead(
        method=method,
        target=target,
        headers=headers,
        content_length=fields.content_length,
        content_type=fields.content_type,
        request_id=fields.request_id,
        authorization=fields.authorization,
        keep_alive=fields.keep_alive,
    )


def _request_line(line: bytes) -> tuple[str, str]:
    parts = line.split(b" ")
    if len(line) > MAX_LINE or len(parts) != 3 or parts[2] != b"HTTP/1.1":
        raise _NotPlainError
    method, target = parts[0], parts[1]
    if not method or method.translate(None, _TOKEN) or not target.startswith(b"/"):
        raise _NotPlainError
    if not target.isascii() or target.translate(None, _VALUE) or b"\t" in target:
        raise _NotPlainError
    return method.decode("ascii"), target.decode("ascii")


class _Fields:
    """The header values the prediction path reads, gathered line by line."""

    __slots__ = ("authorization", "content_length", "content_type", "keep_alive", "request_id",
                 "seen")  # fmt: skip

    def __init__(self) -> None:
        self.content_length = 0
        self.content_type = self.request_id = self.authorization = ""
        self.keep_alive = True
        self.seen: set[bytes] = set()

    def read(self, line: bytes) -> tuple[str, str]:
        """One header line as (name, value) text, noting the values read here."""
        name, colon, raw = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN) or len(line) > MAX_LINE:
            raise _NotPlainError
        value = raw.strip(b" \t")
        if value.translate(None, _VALUE):
            raise _NotPlainError
        text = value.decode("utf-8", "surrogateescape")
        key = name.lower()
        if key in _READ:
            if key in self.seen:  # which of two copies counts is a parser's choice: not plain
                raise _NotPlainError
            self.seen.add(key)
            self._note(key, value, text)
        elif key in _NOT_PLAIN:
            raise _NotPlainError
        return name.decode("ascii"), text

    def _note(self, key: bytes, value: bytes, text: str) -> None:
        if key == b"content-length":
            if not value.isdigit():
                raise _NotPlainError
            self.content_length = int(value)
        elif key == b"content-type":
            if text.partition(";")[0].strip().lower() in _FORMS:
                raise _NotPlainError
            self.content_type = text
        elif key == b"x-request-id":
            self.request_id = text
        elif key == b"authorization":
            self.authorization = text
        else:  # connection
            tokens = {token.strip() for token in value.lower().split(b",")}
            if b"upgrade" in tokens:
                raise _NotPlainError
            self.keep_alive = b"close" not in tokens
