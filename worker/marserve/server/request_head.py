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

import re
from dataclasses import dataclass

# aiohttp's default limits on one request line or header line and on the number of headers.
MAX_LINE = 8190
MAX_HEADERS = 128
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 tokens: methods and header names
_VISIBLE = rb"[\x21-\x7e\x80-\xff]"  # visible ASCII and obs-text
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.1")
# A header line: a token, a colon, and a value of visible bytes with spaces or tabs inside it
# (llhttp's strict field-value), optional whitespace around it. No other control byte.
_HEADER = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:" + _VISIBLE + rb"(?:[\t \x21-\x7e\x80-\xff]*"
    + _VISIBLE + rb")?)?)[ \t]*"
)  # fmt: skip
_FORMS = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
# Headers that change how a message is framed or answered; any of them sends it to aiohttp.
_NOT_PLAIN = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
# Headers read here; a second copy of one makes the request not plain, since which of two
# copies counts is a parser's choice.
_READ = frozenset({b"content-length", b"content-type", b"x-request-id", b"authorization",
                   b"connection"})  # fmt: skip


@dataclass(slots=True)
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


def parse_head(head: bytes) -> RequestHead | None:
    """The head (without its closing blank line) of a plain HTTP/1.1 request, or None."""
    lines = head.split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None or len(lines[0]) > MAX_LINE or len(lines) > MAX_HEADERS + 1:
        return None
    headers: list[tuple[str, str]] = []
    read: dict[bytes, bytes] = {}
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None or len(line) > MAX_LINE:
            return None
        name, value = header.groups()
        key = name.lower()
        if key in _READ:
            if key in read:
                return None
            read[key] = value
        elif key in _NOT_PLAIN:
            return None
        headers.append((name.decode("ascii"), value.decode("utf-8", "surrogateescape")))
    method, target = request_line.groups()
    return _plain_head(method.decode("ascii"), target.decode("ascii"), tuple(headers), read)


def _plain_head(
    method: str, target: str, headers: tuple[tuple[str, str], ...], read: dict[bytes, bytes]
) -> RequestHead | None:
    """The head from the values read, or None where one of them is not plain."""
    length = read.get(b"content-length", b"0")
    if not length.isdigit():
        return None
    content_type = _text(read, b"content-type")
    if content_type and content_type.partition(";")[0].strip().lower() in _FORMS:
        return None
    keep_alive = True
    if b"connection" in read:
        connection = {token.strip() for token in read[b"connection"].lower().split(b",")}
        if b"upgrade" in connection:
            return None
        keep_alive = b"close" not in connection
    return RequestHead(
        method=method,
        target=target,
        headers=headers,
        content_length=int(length),
        content_type=content_type,
        request_id=_text(read, b"x-request-id"),
        authorization=_text(read, b"authorization"),
        keep_alive=keep_alive,
    )


def _text(read: dict[bytes, bytes], key: bytes) -> str:
    """A header's value as aiohttp decodes it, or "" where the request has none."""
    value = read.get(key)
    return "" if value is None else value.decode("utf-8", "surrogateescape")
