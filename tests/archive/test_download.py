"""Remote archives over http(s): retries, resumes, limits, digests and clean failures.

The cloud object stores run the same transfer code; tests/archive/test_object_stores.py covers
them against local emulators.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from marserve.contract import EXTRACT_ENV
from marserve.manifest import MANIFEST_PATH

FAST_RETRIES = ("--attempts", "3", "--retry-backoff", "0.01")


def _app(routes: dict[str, Callable[[web.Request], Any]]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


def _bytes_handler(body: bytes, hits: list[str]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=body)

    return handler


def test_http_download_with_digest_as_a_subprocess(
    real_mars: dict[str, Path],
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    body = real_mars["default"].read_bytes()
    hits: list[str] = []
    server = serve(_app({"/models/mlp.mar": _bytes_handler(body, hits)}))
    digest = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "models"
    url = f"{server.url}/models/mlp.mar"
    outcome = marserve("extract", url, dest, "--sha256", digest, subprocess_run=True)
    assert outcome.code == 0, outcome.stderr_lines
    assert (dest / MANIFEST_PATH).is_file()
    assert hits == ["/models/mlp.mar"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models"]


def test_http_authorization_comes_from_the_environment(
    real_mars: dict[str, Path],
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []

    async def guarded(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Bearer s3cret":
            raise web.HTTPUnauthorized()
        return web.Response(body=real_mars["default"].read_bytes())

    server = serve(_app({"/mlp.mar": guarded}))
    url = f"{server.url}/mlp.mar"
    refused = marserve("extract", url, tmp_path / "refused", *FAST_RETRIES)
    clean_failure(refused, tmp_path / "refused", expect=f"download of {url} failed: HTTP 401")
    monkeypatch.setenv(EXTRACT_ENV.archive_authorization, "Bearer s3cret")
    outcome = marserve("extract", url, tmp_path / "models", subprocess_run=True)
    assert outcome.code == 0, outcome.stderr_lines
    assert seen == [None, "Bearer s3cret"]
    assert not any("s3cret" in line for line in outcome.stderr_lines)


def test_404_fails_at_once(
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    hits: list[str] = []

    async def missing(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPNotFound()

    server = serve(_app({"/missing.mar": missing}))
    dest = tmp_path / "models"
    url = f"{server.url}/missing.mar?X-Amz-Signature=topsecret"
    outcome = marserve("extract", url, dest, *FAST_RETRIES)
    clean_failure(outcome, dest, expect=f"download of {server.url}/missing.mar failed: HTTP 404")
    assert "topsecret" not in outcome.stderr_lines[0]
    assert hits == ["/missing.mar"]


def test_500_then_ok_is_retried(
    real_mars: dict[str, Path],
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    answers = [web.HTTPInternalServerError, web.HTTPBadGateway]
    hits: list[str] = []

    async def flaky(request: web.Request) -> web.Response:
        hits.append(request.path)
        if answers:
            raise answers.pop(0)()
        return web.Response(body=real_mars["default"].read_bytes())

    server = serve(_app({"/mlp.mar": flaky}))
    outcome = marserve("extract", f"{server.url}/mlp.mar", tmp_path / "models", *FAST_RETRIES)
    assert outcome.code == 0
    assert len(hits) == 3
    retries = [line for line in outcome.stderr_lines if line.startswith("retrying")]
    assert len(retries) == 2
    assert (tmp_path / "models" / MANIFEST_PATH).is_file()


def _mar_with_padding(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST_PATH, '{"model": {"modelName": "m", "handler": "h.py"}}')
        archive.writestr("h.py", "")
        archive.writestr("weights.bin", os.urandom(size))
    return buffer.getvalue()


def _ranged(body: bytes, request: web.Request) -> web.Response:
    """Answers a `Range: bytes=N-` request with 206 and the tail, as S3 and CDNs do."""
    start = int(request.headers["Range"].removeprefix("bytes=").removesuffix("-"))
    return web.Response(
        status=206,
        body=body[start:],
        headers={"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
    )


@pytest.mark.parametrize("honours_range", [True, False], ids=["206", "ignores-range"])
def test_dropped_connection_resumes_with_a_range_request(
    honours_range: bool, serve: Callable[..., Any], marserve: Callable[..., Any], tmp_path: Path
) -> None:
    body = _mar_with_padding(3 * 1024 * 1024)
    ranges: list[str | None] = []

    async def drops_once(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if len(ranges) > 1:
            return _ranged(body, request) if honours_range else web.Response(body=body)
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    server = serve(_app({"/mlp.mar": drops_once}))
    digest = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "models"
    outcome = marserve("extract", f"{server.url}/mlp.mar", dest, "--sha256", digest, *FAST_RETRIES)
    assert outcome.code == 0, outcome.stderr_lines
    assert ranges[0] is None
    assert len(ranges) == 2
    resumed_at = int(str(ranges[1]).removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= len(body) // 2
    assert (dest / "weights.bin").stat().st_size == 3 * 1024 * 1024


def test_persistent_5xx_gives_up_after_the_attempts(
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    hits: list[str] = []

    async def down(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPServiceUnavailable()

    server = serve(_app({"/mlp.mar": down}))
    dest = tmp_path / "models"
    outcome = marserve("extract", f"{server.url}/mlp.mar", dest, *FAST_RETRIES, "--quiet")
    clean_failure(outcome, dest, expect="failed after 3 attempts: HTTP 503 Service Unavailable")
    assert len(hits) == 3


def test_connection_refused_is_retried_then_reported(
    marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dest = tmp_path / "models"
    outcome = marserve(
        "extract", f"http://127.0.0.1:{port}/mlp.mar", dest, *FAST_RETRIES, "--quiet"
    )
    clean_failure(outcome, dest, expect="failed after 3 attempts: URLError")


def test_stalled_server_times_out(
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(body=b"late")

    server = serve(_app({"/mlp.mar": stall}))
    dest = tmp_path / "models"
    outcome = marserve(
        "extract",
        f"{server.url}/mlp.mar",
        dest,
        "--timeout",
        "0.2",
        "--attempts",
        "1",
    )
    clean_failure(outcome, dest, expect="failed after 1 attempts: TimeoutError: timed out")


@pytest.mark.parametrize("declares_length", [True, False], ids=["content-length", "chunked"])
def test_oversized_download_is_cut_off(
    declares_length: bool,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    chunk = bytes(256 * 1024)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if declares_length:
            response.content_length = 16 * len(chunk)
        await response.prepare(request)
        try:
            for _ in range(16):
                await response.write(chunk)
        except ConnectionError:
            pass
        return response

    server = serve(_app({"/huge.mar": huge}))
    dest = tmp_path / "models"
    outcome = marserve(
        "extract", f"{server.url}/huge.mar", dest, "--max-archive-size", "1MiB", *FAST_RETRIES
    )
    clean_failure(outcome, dest, expect="is larger than the limit of 1.0 MiB")


def test_remote_digest_mismatch_leaves_nothing(
    real_mars: dict[str, Path],
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    tmp_path: Path,
) -> None:
    server = serve(_app({"/mlp.mar": _bytes_handler(real_mars["tgz"].read_bytes(), [])}))
    dest = tmp_path / "models"
    dest.mkdir()
    outcome = marserve("extract", f"{server.url}/mlp.mar", dest, "--sha256", "ab" * 32)
    clean_failure(outcome, dest, expect=f"expected {'ab' * 32}")
