"""Which request heads the inference port reads itself, and what it reads from them.

Anything `parse_head` refuses goes to aiohttp, so a refusal is always safe; what must never
happen is a head read here that aiohttp would read differently (framing, duplicates, folding).
"""

from __future__ import annotations

import pytest

from marserve.server.request_head import MAX_HEADERS, MAX_LINE, parse_head

PLAIN = (
    b"POST /predictions/mlp/2.0?x=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"content-length:  36 \r\n"
    b"X-Request-Id: abc\r\n"
    b"Authorization: Bearer t0k\r\n"
    b"Connection: keep-alive"
)


def test_a_plain_head_is_read_with_every_header_in_order() -> None:
    head = parse_head(PLAIN)
    assert head is not None
    assert (head.method, head.target) == ("POST", "/predictions/mlp/2.0?x=1")
    assert head.content_length == 36
    assert head.content_type == "application/json; charset=utf-8"
    assert (head.request_id, head.authorization, head.keep_alive) == ("abc", "Bearer t0k", True)
    assert [name for name, _ in head.headers] == [
        "Host", "Content-Type", "content-length", "X-Request-Id", "Authorization", "Connection",
    ]  # fmt: skip
    assert head.headers[2] == ("content-length", "36")


def test_header_values_are_decoded_as_aiohttp_decodes_them() -> None:
    head = parse_head(b"GET /predictions/m HTTP/1.1\r\nX-Name: caf\xc3\xa9 \xff")
    assert head is not None
    assert head.headers == (("X-Name", "caf\u00e9 \udcff"),)
    assert head.content_length == 0


def test_connection_close_is_honoured() -> None:
    head = parse_head(b"POST /predictions/m HTTP/1.1\r\nConnection: keep-alive, Close")
    assert head is not None and not head.keep_alive


@pytest.mark.parametrize(
    "head",
    [
        b"POST /predictions/m HTTP/1.0",  # HTTP/1.0's keep-alive rules are aiohttp's
        b"POST /predictions/m HTTP/1.1 extra",
        b"POST  /predictions/m HTTP/1.1",
        b"POST http://host/predictions/m HTTP/1.1",  # absolute form
        b"P(ST /predictions/m HTTP/1.1",
        b"POST /predictions/m\x7f HTTP/1.1",
        b"POST /predictions/\xc3\xa9 HTTP/1.1",
        b"POST /predictions/m HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1",
        b"POST /predictions/m HTTP/1.1\r\nContent-Length: +1",
        b"POST /predictions/m HTTP/1.1\r\nContent-Length: 0x10",
        b"POST /predictions/m HTTP/1.1\r\nContent-Length: 1, 1",
        b"POST /predictions/m HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"POST /predictions/m HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked",
        b"POST /predictions/m HTTP/1.1\r\nExpect: 100-continue",
        b"POST /predictions/m HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket",
        b"POST /predictions/m HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x",
        b"POST /predictions/m HTTP/1.1\r\nContent-Type: Application/X-WWW-Form-Urlencoded",
        b"POST /predictions/m HTTP/1.1\r\nX-A: 1\r\n folded",  # obs-fold
        b"POST /predictions/m HTTP/1.1\r\nX-A : 1",  # space before the colon
        b"POST /predictions/m HTTP/1.1\r\nX-A 1",
        b"POST /predictions/m HTTP/1.1\r\n: 1",
        b"POST /predictions/m HTTP/1.1\r\nX-A: 1\n2",  # a bare line feed
        b"POST /predictions/m HTTP/1.1\r\nX-A: 1\r2",
        b"POST /predictions/m HTTP/1.1\r\nX-A: \x00",
        b"POST /predictions/m HTTP/1.1\r\nX-Request-Id: a\r\nX-Request-Id: b",
        b"POST /predictions/m HTTP/1.1\r\nContent-Type: a\r\ncontent-type: b",
        b"POST /predictions/m HTTP/1.1\r\nX-A: " + b"a" * MAX_LINE,
        b"POST /predictions/m HTTP/1.1" + b"\r\nX-A: 1" * (MAX_HEADERS + 1),
        b"\r\nPOST /predictions/m HTTP/1.1",
        b"POST /predictions/m HTTP/1.1\r\nX-Caf\xc3\xa9: 1",  # a name that is no token
        b"",
    ],
)
def test_anything_not_plain_is_left_to_aiohttp(head: bytes) -> None:
    assert parse_head(head) is None
