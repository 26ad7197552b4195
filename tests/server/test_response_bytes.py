"""The bytes of the answers the inference port writes itself, read back by the standard
library's HTTP client parser."""

from __future__ import annotations

import email.utils
import http.client
import io

import pytest

from marserve.server.response_bytes import (
    LAST_CHUNK,
    DateHeader,
    UnsafeHeaderError,
    chunk,
    response_head,
)


class BytesSocket:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def read_back(data: bytes) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(BytesSocket(data))  # type: ignore[arg-type]
    response.begin()
    return response


def test_a_whole_answer_reads_back_with_its_headers_length_and_date() -> None:
    head = response_head(
        201,
        [("X-Model", "mlp"), ("content-length", "999"), ("Connection", "upgrade")],
        length=5,
        keep_alive=True,
        date=DateHeader(),
    )
    response = read_back(head + b"hello")
    assert (response.status, response.reason, response.read()) == (201, "Created", b"hello")
    assert response.headers.get_all("Content-Length") == ["5"]
    assert response.headers["X-Model"] == "mlp"
    assert "Connection" not in response.headers and not response.will_close
    assert email.utils.parsedate_to_datetime(response.headers["Date"]).tzname() == "UTC"


def test_a_chunked_answer_skips_empty_chunks_and_closes_when_asked() -> None:
    head = response_head(599, [], length=None, keep_alive=False, date=DateHeader())
    response = read_back(head + chunk(b"ab") + chunk(b"") + chunk(b"c" * 300) + LAST_CHUNK)
    assert (response.status, response.reason) == (599, "")
    assert response.read() == b"ab" + b"c" * 300
    assert response.headers["Connection"] == "close" and response.will_close


@pytest.mark.parametrize(
    "header", [("X-A", "1\r\nSet-Cookie: x=1"), ("X-A", "1\n"), ("X-A\r", "1")]
)
def test_a_header_with_a_line_break_is_refused(header: tuple[str, str]) -> None:
    with pytest.raises(UnsafeHeaderError):
        response_head(200, [header], length=0, keep_alive=True, date=DateHeader())
