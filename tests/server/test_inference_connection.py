"""The inference port's own connections, over raw sockets to a real server.

Plain predictions are answered without aiohttp and the first request that is not plain hands the
connection to aiohttp (`inference_connection.py`). These tests send what clients really send on
one connection (pipelined requests, requests split across packets, a mix of plain and other
requests, `Connection: close`, chunked and malformed bodies) and check every answer in order.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from marserve.server.inference_connection import PredictionPort
from marserve.server.metrics import ServerMetrics
from marserve.server.served_models import ServedModels

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]
BODY = json.dumps([ROW]).encode()


class KeptOpen:
    """A file whose `close` leaves it open: HTTPResponse closes its file after each body."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        """The connection's next answer is read from the same file."""


class Connection:
    """One client socket that reads answers in order, as a pipelining client does."""

    def __init__(self, url: str, authorization: str) -> None:
        self.authorization = authorization.encode()
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, http.client.HTTPMessage, bytes]:
        response = http.client.HTTPResponse(self)  # type: ignore[arg-type]
        response.begin()
        return response.status, response.headers, response.read()

    def makefile(self, mode: str) -> Any:
        """What HTTPResponse reads from: the one buffered file, so no answer's bytes are lost,
        kept open when a response is done with it."""
        return KeptOpen(self.file)

    def closed_by_server(self) -> bool:
        return self.file.read(1) == b""

    def predict(self, request_id: str, *, extra: bytes = b"", body: bytes = BODY) -> bytes:
        """A plain prediction request for the `mlp` model, with this client's token."""
        return (
            b"POST /predictions/mlp HTTP/1.1\r\nHost: test\r\n"
            b"Authorization: " + self.authorization + b"\r\n"
            b"Content-Type: application/json\r\nX-Request-Id: " + request_id.encode() + b"\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )  # fmt: skip


@pytest.fixture
def connection(main_server: Any, auth: dict[str, str]) -> Iterator[Connection]:
    client = Connection(main_server.inference, auth["Authorization"])
    yield client
    client.sock.close()


def assert_prediction(answer: tuple[int, http.client.HTTPMessage, bytes], request_id: str) -> None:
    status, headers, body = answer
    assert status == 200, body
    assert headers["X-Request-Id"] == request_id
    assert headers["Content-Type"] == "application/json"
    assert len(json.loads(body)[0]) == 4


def test_pipelined_requests_are_answered_in_order(connection: Connection) -> None:
    connection.send(b"".join(connection.predict(f"pipe-{n}") for n in range(5)))
    for n in range(5):
        assert_prediction(connection.answer(), f"pipe-{n}")


def test_a_request_split_across_packets_is_answered(connection: Connection) -> None:
    request = connection.predict("split")
    for start in range(0, len(request), 7):
        connection.send(request[start : start + 7])
    assert_prediction(connection.answer(), "split")


def test_a_connection_serves_plain_and_other_requests_in_any_order(
    connection: Connection,
) -> None:
    """The `/ping` hands the connection to aiohttp, which answers everything after it."""
    connection.send(connection.predict("before") + b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
    assert_prediction(connection.answer(), "before")
    status, _, body = connection.answer()
    assert (status, json.loads(body)) == (200, {"status": "Healthy"})
    connection.send(connection.predict("after"))
    assert_prediction(connection.answer(), "after")


def test_connection_close_is_answered_then_closed(connection: Connection) -> None:
    connection.send(connection.predict("last", extra=b"Connection: close\r\n"))
    answer = connection.answer()
    assert_prediction(answer, "last")
    assert answer[1]["Connection"] == "close"
    assert connection.closed_by_server()


def test_a_chunked_body_is_read_by_aiohttp_with_the_same_answer(connection: Connection) -> None:
    request = connection.predict("chunked", body=b"").replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked"
    )
    connection.send(request + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY))
    assert_prediction(connection.answer(), "chunked")


def test_an_http_1_0_request_is_answered_and_closed(connection: Connection) -> None:
    connection.send(connection.predict("old").replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert_prediction(connection.answer(), "old")
    assert connection.closed_by_server()


@pytest.mark.parametrize(
    "smuggled",
    [
        b"Content-Length: 3\r\n",  # a second, different length
        b"Transfer-Encoding: chunked\r\n",  # both framings
        b"X-Folded: a\r\n b\r\n",
    ],
)
def test_ambiguous_framing_is_refused_by_aiohttp(connection: Connection, smuggled: bytes) -> None:
    connection.send(connection.predict("smuggle", extra=smuggled))
    status, _, body = connection.answer()
    assert status == 400, body


def test_errors_on_the_plain_path_are_torchserves(connection: Connection) -> None:
    connection.send(
        connection.predict("no-token").replace(connection.authorization, b"Bearer wrong")
        + connection.predict("unknown").replace(b"/predictions/mlp", b"/predictions/nope")
    )
    status, headers, body = connection.answer()
    assert (status, headers["X-Request-Id"], json.loads(body)["type"]) == (
        401, "no-token", "Unauthorized"
    )  # fmt: skip
    status, headers, body = connection.answer()
    assert (status, headers["X-Request-Id"], json.loads(body)) == (
        404,
        "unknown",
        {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nope"},
    )


def test_a_client_that_leaves_mid_request_costs_others_nothing(
    main_server: Any, auth: dict[str, str]
) -> None:
    leaving = Connection(main_server.inference, auth["Authorization"])
    leaving.send(leaving.predict("gone", body=json.dumps({"sleep": 0.3}).encode()))
    leaving.sock.close()
    staying = Connection(main_server.inference, auth["Authorization"])
    try:
        staying.send(staying.predict("stays"))
        assert_prediction(staying.answer(), "stays")
    finally:
        staying.sock.close()


class Recorder(asyncio.Protocol):
    """Stands where aiohttp's protocol stands: records what a handed-over connection carries."""

    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def model_less_port(recorder: Recorder, *, keepalive_timeout_s: float = 75.0) -> PredictionPort:
    """A port with no models: every plain prediction is answered 404 on the port itself."""
    return PredictionPort(
        models=ServedModels({}), metrics=ServerMetrics(hostname="test"),
        expected_authorization=None, new_request_id=lambda: "id", max_request_size=1000,
        max_response_size=1000, fallback=lambda: recorder, keepalive_timeout_s=keepalive_timeout_s,
    )  # fmt: skip


async def test_the_first_request_that_is_not_plain_hands_over_every_unread_byte() -> None:
    """A plain request is answered on the port itself (404: no models), the next one is not
    plain, and the protocol behind the port gets it and what follows, from its first byte."""
    recorder = Recorder()
    port = model_less_port(recorder)
    server = await asyncio.get_running_loop().create_server(port.connection, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    rest = b"GET /ping HTTP/1.1\r\n\r\nPOST /predictions/m HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    writer.write(b"POST /predictions/m HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}" + rest)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    for _ in range(500):
        if recorder.received == rest:
            break
        await asyncio.sleep(0.01)
    assert recorder.received == rest
    assert not port.connections
    writer.close()
    server.close()


async def test_idle_connections_are_closed_after_the_keepalive_timeout() -> None:
    """One kept alive after an answer and one that never sent a whole request are both closed;
    the port forgets them."""
    port = model_less_port(Recorder(), keepalive_timeout_s=0.2)
    server = await asyncio.get_running_loop().create_server(port.connection, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    answered_reader, answered = await asyncio.open_connection(*address)
    answered.write(b"POST /predictions/m HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    partial_reader, partial = await asyncio.open_connection(*address)
    partial.write(b"POST /predictions/m HTTP/1.1\r\n")
    head = await answered_reader.readuntil(b"\r\n\r\n")
    assert b"404" in head.split(b"\r\n")[0]
    await answered_reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    assert await asyncio.wait_for(answered_reader.read(), 5) == b""
    assert await asyncio.wait_for(partial_reader.read(), 5) == b""
    assert not port.connections
    server.close()


async def test_thousands_of_pipelined_requests_answered_at_once_are_all_answered() -> None:
    """Each 404 is written as soon as its request is read; the next one must not be read from
    inside that answer, or a long pipeline would recurse past Python's limit."""
    port = model_less_port(Recorder())
    server = await asyncio.get_running_loop().create_server(port.connection, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    writer.write(b"POST /predictions/m HTTP/1.1\r\nContent-Length: 0\r\n\r\n" * 2000)
    for _ in range(2000):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 404 ")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    writer.close()
    server.close()


def test_a_token_that_is_not_utf8_is_refused_with_401(connection: Connection) -> None:
    connection.send(connection.predict("latin").replace(connection.authorization, b"Bearer \xff"))
    status, headers, body = connection.answer()
    assert (status, headers["X-Request-Id"], json.loads(body)["type"]) == (
        401, "latin", "Unauthorized"
    )  # fmt: skip
