"""Local stand-ins for the three clouds' object stores, and a proxy that misbehaves on cue.

- S3: moto's server (`ThreadedMotoServer`), which also answers STS for IRSA's web identity.
- Google Cloud Storage: `gcp-storage-emulator` (PyPI), the JSON API the client library calls.
- Azure Blob: Azurite (npm), run with the machine's Node.js; installed on first use into a cache
  folder when it is not on PATH.

Each starts on 127.0.0.1 and skips the test with the reason when its tool cannot run. The
`HostileProxy` sits between the client library and the emulator to cut a body short or answer
an error as the provider would, and records the Authorization headers it saw.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from marserve.manifest import MANIFEST_PATH

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented well-known development key, not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_HOME = Path.home() / ".cache" / "marserve-tests" / "azurite"
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 and STS on 127.0.0.1; yields its URL."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in memory on 127.0.0.1; yields its URL."""
    emulator = pytest.importorskip(
        "gcp_storage_emulator.server", reason="gcp-storage-emulator is not installed"
    )
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def azurite_command() -> Path:
    """The azurite-blob launcher: on PATH, or installed from npm into a cache folder."""
    found = shutil.which("azurite-blob") or AZURITE_HOME / "node_modules" / ".bin" / "azurite-blob"
    if Path(found).exists():
        return Path(found)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("Azurite needs Node.js and npm, which are not installed")
    AZURITE_HOME.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(AZURITE_HOME), "azurite@3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    launcher = AZURITE_HOME / "node_modules" / ".bin" / "azurite-blob"
    if done.returncode != 0 or not launcher.exists():
        pytest.skip(f"cannot install Azurite from npm: {done.stderr.strip()[-300:]}")
    return launcher


@contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Azurite's blob service in memory on 127.0.0.1; yields the account's blob endpoint."""
    port = free_port()
    log = (workdir / "azurite.log").open("w")
    process = subprocess.Popen(
        [
            str(azurite_command()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while "successfully listens" not in (workdir / "azurite.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Azurite did not start: {(workdir / 'azurite.log').read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def azurite_connection_string(endpoint: str, *, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint};"
    )


@dataclass
class HostileProxy:
    """What the proxy does to the next responses: cut bodies of at least `min_cut_bytes` in
    half, or answer `refusal` (status, content type, body) instead of forwarding."""

    upstream: str
    cuts: int = 0
    min_cut_bytes: int = 64 * 1024
    refusal: tuple[int, str, str] | None = None
    authorizations: list[str | None] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.refusal is not None:
            status, content_type, text = self.refusal
            return web.Response(status=status, text=text, content_type=content_type)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        async with (
            ClientSession(auto_decompress=False, skip_auto_headers=["Content-Type"]) as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer,
        ):
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
        if self.cuts and request.method == "GET" and len(payload) >= self.min_cut_bytes:
            self.cuts -= 1
            response = web.StreamResponse(status=answer.status, headers=kept)
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=answer.status, body=payload, headers=kept)


def clear_cloud_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No credentials or endpoints from the machine, and no credential chain that reaches past
    127.0.0.1 (instance metadata services are pointed at a closed local port)."""
    for name in list(os.environ):
        if name.startswith(
            ("AWS_", "AZURE_", "GOOGLE_", "GCE_", "STORAGE_EMULATOR", "MARSERVE_ARCHIVE_")
        ):
            monkeypatch.delenv(name)
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_TIMEOUT", "1")
    point_metadata_server_at(monkeypatch, closed)


def point_metadata_server_at(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """GCE_METADATA_HOST for google-auth, which reads it once on import (a test process
    imports it long before this test's environment is set)."""
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    try:
        from google.auth.compute_engine import _metadata
    except ImportError:
        return
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)


def model_archive(size: int = 1024 * 1024) -> bytes:
    """A valid model archive of about `size` bytes, large enough to be cut mid-body."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST_PATH, '{"model": {"modelName": "m", "handler": "h.py"}}')
        archive.writestr("h.py", "")
        archive.writestr("weights.bin", os.urandom(size))
    return buffer.getvalue()
