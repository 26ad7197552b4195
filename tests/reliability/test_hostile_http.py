"""Hostile HTTP: malformed, empty, oversized and inconsistent requests each get a clear JSON error;
slow and vanishing clients never stop the server answering others nor leak a queue slot; a fuzzer
driven by the server's own /openapi.json finds no unexpected 500, crash or hang."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.serving import chaos_archive, describe, sample, scrape, wait_idle
from support.serving import RunningServer, start_server, stop_server

MAX_BODY = 10_000
MODEL = "echo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("hostile-http")
    archive = chaos_archive(
        tmp / MODEL,
        name=MODEL,
        yaml_config={"batchSize": 4, "maxBatchDelay": 5, "responseTimeout": 5, "jobQueueSize": 16},
    )
    running = start_server(
        tmp, model_args=[f"{MODEL}={archive}"], extra_args=["--max-request-size", str(MAX_BODY)]
    )
    yield running
    stop_server(running)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _json_error(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The body of an error answer, checked to be its protocol's JSON error shape: the Open
    Inference Protocol's `{"error": message}` under /v2, TorchServe's elsewhere."""
    assert response.content_type == "application/json", await response.text()
    body: dict[str, Any] = await response.json()
    if response.url.path.startswith("/v2/"):
        assert list(body) == ["error"] and body["error"], body
        return body
    assert body["code"] == response.status
    assert body["type"] and body["message"]
    return body


TENSOR = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
V2_TEXT = json.dumps({"inputs": [TENSOR]})
FORM = "application/x-www-form-urlencoded"
MALFORMED = [
    ("/v1/models/echo:predict", {"Content-Type": "application/json"}, b"{bad", 400),
    ("/v1/models/echo:predict", {}, b"", 400),
    ("/v1/models/echo:predict", {"Content-Type": "application/json"}, b'{"instances": 3}', 400),
    ("/v1/models/echo:predict", {"Content-Type": "application/json"}, b"[1, 2]", 400),
    ("/v2/models/echo/infer", {"Content-Type": "application/json"}, b"{bad", 400),
    ("/v2/models/echo/infer", {}, b"", 400),
    ("/v2/models/echo/infer", {"Content-Type": "application/json"}, b"\xff\xfe", 400),
    ("/predictions/echo", {"Content-Type": "multipart/form-data"}, b"garbage", 400),
    ("/predictions/echo", {"Content-Type": "multipart/form-data; boundary=xyz"}, b"junk", 400),
    ("/predictions/echo", {"Content-Type": FORM}, b"\xff\xfe=%%%", 400),
    # TorchServe hands the raw body to the handler whatever it is: so do we.
    ("/predictions/echo", {"Content-Type": "application/json"}, b"{bad", 200),
    ("/predictions/echo", {}, b"", 200),
    ("/predictions/echo", {"Content-Type": "image/png"}, b"\x89PNG not really", 200),
    (
        "/v2/models/echo/infer",
        {"Content-Type": "text/plain"},
        json.dumps({"inputs": [TENSOR]}),
        200,
    ),
]


@pytest.mark.parametrize(("path", "headers", "body", "expected"), MALFORMED)
async def test_malformed_or_mistyped_bodies_get_a_json_400_or_reach_the_handler(
    server: RunningServer,
    session: aiohttp.ClientSession,
    path: str,
    headers: dict[str, str],
    body: bytes | str,
    expected: int,
) -> None:
    async with session.post(server.inference + path, data=body, headers=headers) as response:
        assert response.status == expected, await response.text()
        if expected >= 400:
            await _json_error(response)


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 1000):
        yield b"x" * 1000


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/predictions/echo", "raw"),
        ("/predictions/echo", "chunked"),
        ("/predictions/echo", "multipart"),
        ("/v1/models/echo:predict", "raw"),
        ("/v2/models/echo/infer", "chunked"),
    ],
)
async def test_oversized_bodies_get_413_however_they_are_sent(
    server: RunningServer, session: aiohttp.ClientSession, path: str, shape: str
) -> None:
    size = MAX_BODY * 3
    data: Any
    if shape == "raw":
        data = b"x" * size
    elif shape == "chunked":
        data = _chunks(size)
    else:
        data = aiohttp.FormData()
        data.add_field("file", b"x" * size, filename="big.bin")
    async with session.post(server.inference + path, data=data) as response:
        assert response.status == 413
        error = await _json_error(response)
        if path.startswith("/v2/"):
            assert "Maximum request body size" in error["error"]
        else:
            assert error["type"] == "RequestEntityTooLarge"


def _raw_exchange(port: int, request: bytes, *, half_close: bool = True) -> bytes:
    """Sends bytes as they are and returns what the server answered before closing (nothing
    when it reset the connection while the rest of an oversized request was still arriving).

    With `half_close` the client's end of the stream follows the request at once, and a server
    may close on it before answering; without, the server answers what it read first."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /ping?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predictions/" + b"m" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 100_000 + b"\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(2000))
        + b"\r\n",
        b"NOT-HTTP\r\n\r\n",
    ],
    ids=["long-url", "long-path", "long-header", "many-headers", "garbage"],
)
async def test_huge_request_lines_and_headers_are_refused_and_others_still_served(
    server: RunningServer, session: aiohttp.ClientSession, request_bytes: bytes
) -> None:
    answer = await asyncio.to_thread(_raw_exchange, server.inference_port, request_bytes)
    assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:200]
    async with session.get(f"{server.inference}/ping") as response:
        assert response.status == 200


async def test_a_malformed_request_is_one_log_line_and_counted_as_a_4xx(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    """A client cannot fill the logs with parser tracebacks, and the refusal is not invisible."""
    before = sample(await scrape(session, server), "Requests4XX")
    log_size = server.log_path.stat().st_size
    request = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 10_000 + b"\r\n\r\n"
    answer = await asyncio.to_thread(
        _raw_exchange, server.inference_port, request, half_close=False
    )
    assert re.match(rb"HTTP/1\.[01] 400 ", answer)
    assert sample(await scrape(session, server), "Requests4XX") == before + 1
    logged = server.log()[log_size:]
    assert "refused a malformed request (400)" in logged
    assert "Traceback" not in logged and "ERROR" not in logged
    assert max(len(line) for line in logged.splitlines()) < 400


@pytest.mark.parametrize(
    ("method", "port", "path", "expected_type"),
    [
        ("POST", "inference", "/predictions/nope", "ModelNotFoundException"),
        ("POST", "inference", "/predictions/echo/9.9", "ModelVersionNotFoundException"),
        ("POST", "inference", "/explanations/nope", "ModelNotFoundException"),
        ("POST", "inference", "/v1/models/nope:predict", "ModelNotFoundException"),
        ("GET", "inference", "/v1/models/nope", "ModelNotFoundException"),
        ("POST", "inference", "/v2/models/nope/infer", "ModelNotFoundException"),
        ("POST", "inference", "/v2/models/echo/versions/2/infer", "ModelVersionNotFoundException"),
        ("GET", "inference", "/v2/models/nope/ready", "ModelNotFoundException"),
        ("GET", "management", "/models/nope", "ModelNotFoundException"),
        ("GET", "management", "/models/echo/0.1", "ModelVersionNotFoundException"),
        ("GET", "inference", "/no/such/route", "NotFound"),
    ],
)
async def test_unknown_models_versions_and_routes_get_a_json_404(
    server: RunningServer,
    session: aiohttp.ClientSession,
    method: str,
    port: str,
    path: str,
    expected_type: str,
) -> None:
    base = server.inference if port == "inference" else server.management
    async with session.request(method, base + path, json={"inputs": [TENSOR]}) as response:
        assert response.status == 404
        error = await _json_error(response)
        if path.startswith("/v2/"):
            assert error["error"].startswith(("Model not found", "Model version"))
        else:
            assert error["type"] == expected_type


def _tensor(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{**TENSOR, **changes}]}


@pytest.mark.parametrize(
    "payload",
    [
        _tensor(shape=[3]),
        _tensor(shape=[2, 2]),
        _tensor(data=[1.0, 2.0, 3.0]),
        _tensor(data=[[1.0], [2.0, 3.0]]),
        _tensor(datatype="INT32"),
        _tensor(datatype="BOOL"),
        _tensor(datatype="UINT8", data=[-1, 2]),
        _tensor(datatype="BYTES", data=[1, 2]),
        _tensor(datatype="FP128"),
        _tensor(shape=[-2]),
        _tensor(shape="2"),
        _tensor(shape=[True, 2]),
        _tensor(data="1,2"),
        _tensor(data=[1.0, "2"]),
        _tensor(name=""),
        {"inputs": []},
        {"inputs": "x"},
        {"inputs": [3]},
        {"outputs": []},
        [TENSOR],
    ],
)
async def test_inconsistent_v2_tensors_get_400_naming_the_problem(
    server: RunningServer, session: aiohttp.ClientSession, payload: Any
) -> None:
    async with session.post(f"{server.inference}/v2/models/echo/infer", json=payload) as response:
        assert response.status == 400
        await _json_error(response)


async def _dribble(port: int, prefix: bytes, *, seconds: float) -> None:
    """A slowloris client: a request start, then one more header byte every 0.2 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(prefix)
        await writer.drain()
        for _ in range(int(seconds / 0.2)):
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)
    except ConnectionError:
        pass  # the server may cut a slow client off: that is allowed
    finally:
        writer.close()
        del reader


async def test_slowloris_clients_do_not_stop_the_server_answering_others(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    port = server.inference_port
    slow_headers = b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nX-Slow: "
    slow_body = b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
    dribblers = [
        asyncio.create_task(_dribble(port, slow_headers if i % 2 else slow_body, seconds=3))
        for i in range(40)
    ]
    await asyncio.sleep(0.3)
    statuses = []
    for _ in range(4):
        answers = await asyncio.gather(
            *(session.post(f"{server.inference}/predictions/echo", json={}) for _ in range(5))
        )
        statuses += [answer.status for answer in answers]
        for answer in answers:
            answer.release()
        await asyncio.sleep(0.3)
    assert statuses == [200] * 20
    assert not any(task.done() and task.exception() for task in dribblers)
    await asyncio.gather(*dribblers)
    await wait_idle(session, server, MODEL)


async def _vanish_after_sending(port: int, request: bytes, *, linger: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(linger)
    writer.transport.abort()  # RST, as a crashed client or a dropped connection
    del reader


async def test_clients_that_vanish_mid_request_leak_no_worker_or_queue_slot(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    port = server.inference_port
    waiting = json.dumps({"sleep": 0.3}).encode()
    whole = (
        b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(waiting), waiting)
    )
    partial = b'POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{"in'
    await asyncio.gather(
        *(_vanish_after_sending(port, whole, linger=0.05) for _ in range(12)),
        *(_vanish_after_sending(port, partial, linger=0.05) for _ in range(12)),
    )
    await wait_idle(session, server, MODEL)
    described = await describe(session, server, MODEL)
    assert described["jobQueueStatus"]["pendingRequests"] == 0
    assert all(worker["state"] == "READY" for worker in described["workers"])
    answers = await asyncio.gather(
        *(session.post(f"{server.inference}/predictions/echo", json={}) for _ in range(8))
    )
    assert [answer.status for answer in answers] == [200] * 8
    for answer in answers:
        answer.release()


# --- fuzzing from the published OpenAPI document -------------------------------------------

PARAMETER_VALUES = st.one_of(
    st.sampled_from([MODEL, "nope", "1.0", "all", "..", "%2e%2e", "%00", "echo:predict"]),
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=12).map(
        lambda text: "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02X}" for c in text)
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/octet-stream",
        "text/plain; charset=latin-1",
        "multipart/form-data",
        "multipart/form-data; boundary=zz",
        FORM,
        "",
        "image/jpeg",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
V2_LIKE = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(max_size=4),
                    "shape": st.lists(st.integers(-1, 3), max_size=3),
                    "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "UINT8", "X"]),
                    "data": st.lists(JSON_VALUES, max_size=6),
                }
            ),
            max_size=2,
        )
    }
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    V2_LIKE.map(lambda value: json.dumps(value).encode()),
)


@pytest.fixture(scope="module")
def operations(server: RunningServer) -> list[tuple[str, str]]:
    """(method, path template) for every route the server publishes in /openapi.json."""
    connection = http.client.HTTPConnection("127.0.0.1", server.inference_port, timeout=10)
    connection.request("GET", "/openapi.json")
    document = json.loads(connection.getresponse().read())
    connection.close()
    found = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    ]
    assert len(found) >= 15, found
    return found


def _fill(template: str, values: list[str]) -> str:
    path = template
    for value in values:
        start = path.find("{")
        if start < 0:
            break
        path = path[:start] + value + path[path.index("}", start) + 1 :]
    return path


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_requests_get_no_unexpected_500_and_errors_are_json(
    server: RunningServer, operations: list[tuple[str, str]], data: st.DataObject
) -> None:
    method, template = data.draw(st.sampled_from(operations))
    method = data.draw(st.sampled_from([method, method, method, "PUT", "DELETE", "PATCH"]))
    path = _fill(template, data.draw(st.lists(PARAMETER_VALUES, min_size=2, max_size=2)))
    headers = {"Content-Type": data.draw(CONTENT_TYPES)}
    body = data.draw(BODIES) if method != "GET" else b""
    connection = http.client.HTTPConnection("127.0.0.1", server.inference_port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        status, content_type, raw = (
            response.status,
            response.getheader("Content-Type"),
            response.read(),
        )
    finally:
        connection.close()
    assert status != 500, (method, path, headers, body, raw)
    # aiohttp's own parser answers unparseable requests with a plain-text 400 before any route
    if status >= 400 and (status != 400 or content_type == "application/json"):
        error = json.loads(raw)
        served = yarl.URL(f"http://server{path}").path  # as the server resolves it
        if served == "/v2" or served.startswith("/v2/"):  # the Open Inference Protocol's body
            assert list(error) == ["error"] and error["error"], raw
        else:
            assert error["code"] == status and error["type"] and error["message"], raw
    assert server.process.poll() is None


async def test_after_the_fuzzing_the_server_is_healthy_and_idle(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{server.inference}/ping") as response:
        assert response.status == 200
    await wait_idle(session, server, MODEL)
    log = server.log()
    assert "unhandled error" not in log, log[-3000:]
    assert "-> 500" not in log
