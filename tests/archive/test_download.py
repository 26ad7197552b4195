"""Remote archives: http(s) with retries, limits and digests, and SigV4-signed S3 GETs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
import re
import socket
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from marserve.archive import s3
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


# --- S3 -------------------------------------------------------------------------------------

ACCESS_KEY = "AKIDMARSERVETEST"
SECRET_KEY = "marserve/test+secret"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/s3/"
    r"aws4_request,SignedHeaders=(?P<signed>[a-z0-9;-]+),Signature=(?P<signature>[0-9a-f]{64})"
)


def _expected_signature(request: web.Request, match: re.Match[str], secret: str) -> str:
    """SigV4 recomputed from the request as received, following AWS's published steps."""
    names = match["signed"].split(";")
    canonical_headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in names)
    canonical_request = (
        f"{request.method}\n{request.raw_path.split('?')[0]}\n\n{canonical_headers}\n"
        f"{match['signed']}\n{request.headers['x-amz-content-sha256']}"
    )
    scope = f"{match['date']}/{match['region']}/s3/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{request.headers['x-amz-date']}\n{scope}\n"
        + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    key = ("AWS4" + secret).encode()
    for step in (match["date"], match["region"], "s3", "aws4_request"):
        key = hmac.digest(key, step.encode(), "sha256")
    return hmac.new(key, to_sign.encode(), "sha256").hexdigest()


def _s3_app(objects: dict[str, bytes], *, region: str, token: str | None) -> web.Application:
    async def get_object(request: web.Request) -> web.Response:
        match = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        if match is None or match["key"] != ACCESS_KEY or match["region"] != region:
            raise web.HTTPForbidden(text="<Error><Code>AccessDenied</Code></Error>")
        signed = match["signed"].split(";")
        required = {"host", "x-amz-date", "x-amz-content-sha256"}
        if token is not None:
            required.add("x-amz-security-token")
            if request.headers.get("x-amz-security-token") != token:
                raise web.HTTPForbidden(text="<Error><Code>InvalidToken</Code></Error>")
        if not required <= set(signed) or not request.headers["x-amz-date"].startswith(
            match["date"]
        ):
            raise web.HTTPBadRequest(
                text="<Error><Code>AuthorizationHeaderMalformed</Code></Error>"
            )
        if not hmac.compare_digest(
            match["signature"], _expected_signature(request, match, SECRET_KEY)
        ):
            raise web.HTTPForbidden(text="<Error><Code>SignatureDoesNotMatch</Code></Error>")
        body = objects.get(f"{request.match_info['bucket']}/{request.match_info['key']}")
        if body is None:
            raise web.HTTPNotFound(text="<Error><Code>NoSuchKey</Code></Error>")
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/{bucket}/{key:.+}", get_object)
    return app


def test_s3_resume_signs_its_range_header() -> None:
    settings = s3.S3Settings.from_env(
        {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    )
    headers = s3.signed_get_headers(
        "https://b.s3.us-east-1.amazonaws.com/k.mar",
        settings,
        now=_now(),
        extra={"Range": "bytes=100-"},
    )
    assert headers["Range"] == "bytes=100-"
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," in headers["Authorization"]


@pytest.mark.parametrize("token", [None, "session-token/abc=="], ids=["keys", "session"])
def test_s3_get_is_signed_with_sigv4(
    token: str | None,
    real_mars: dict[str, Path],
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    objects = {"models/team a/mlp 1.0.mar": real_mars["default"].read_bytes()}
    server = serve(_s3_app(objects, region="eu-west-3", token=token))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    dest = tmp_path / "models"
    uri = "s3://models/team a/mlp 1.0.mar"
    outcome = marserve("extract", uri, dest, subprocess_run=token is None)
    assert outcome.code == 0, outcome.stderr_lines
    assert (dest / MANIFEST_PATH).is_file()


def test_s3_wrong_secret_is_a_clear_403(
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = serve(_s3_app({}, region="us-east-1", token=None))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    dest = tmp_path / "models"
    outcome = marserve("extract", "s3://models/mlp.mar", dest)
    clean_failure(outcome, dest, expect="download of s3://models/mlp.mar failed: HTTP 403")


def test_sigv4_matches_aws_published_example() -> None:
    """AWS's documented S3 GET example (examplebucket/test.txt, Range bytes=0-9)."""
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": s3.EMPTY_PAYLOAD_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    authorization = s3.authorization(
        method="GET",
        url="https://examplebucket.s3.amazonaws.com/test.txt",
        headers=headers,
        credentials=s3.Credentials(
            "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ),
        region="us-east-1",
    )
    assert authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


@pytest.mark.parametrize(
    ("uri", "env", "url"),
    [
        ("s3://bucket/a/b c.mar", {}, "https://bucket.s3.us-east-1.amazonaws.com/a/b%20c.mar"),
        (
            "s3://my.bucket/m.mar",
            {"AWS_DEFAULT_REGION": "ap-south-1"},
            "https://s3.ap-south-1.amazonaws.com/my.bucket/m.mar",
        ),
        (
            "s3://bucket/m.mar",
            {"AWS_ENDPOINT_URL": "http://minio:9000/", "AWS_ENDPOINT_URL_S3": "http://s3:9000"},
            "http://s3:9000/bucket/m.mar",
        ),
    ],
)
def test_s3_object_urls(uri: str, env: dict[str, str], url: str) -> None:
    assert s3.object_url(uri, s3.S3Settings.from_env(env)) == url


def test_s3_without_credentials_sends_no_signature() -> None:
    settings = s3.S3Settings.from_env({"AWS_ACCESS_KEY_ID": "only-the-id"})
    assert settings.credentials is None
    assert s3.signed_get_headers("https://b.s3.amazonaws.com/k", settings, now=_now()) == {}


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)
