"""TorchServe 0.12 and `marserve serve` on the same archives, asked the same HTTP requests.

Archives are made by the real `torch-model-archiver` from `.venv-torchserve` (the Makefile's
rule creates it). TorchServe takes its request envelope from `service_envelope` in
config.properties, for every model; marserve from each archive's `MANIFEST.json`, so marserve
gets the same archive unpacked with that one field added (a difference the README lists).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.serving import RunningServer, free_port, start_server, stop_server

TS_VENV = Path(__file__).resolve().parents[2] / ".venv-torchserve"
TORCHSERVE = TS_VENV / "bin" / "torchserve"
ARCHIVER = TS_VENV / "bin" / "torch-model-archiver"
START_BUDGET_S = 240


@dataclass(frozen=True)
class Answer:
    """One HTTP response, reduced to what a client of TorchServe can rely on."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def data(self) -> Any:
        """The body as JSON data when it parses, else the raw bytes."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self.body


@dataclass(frozen=True)
class Pair:
    """The inference addresses of both servers, serving the same models."""

    torchserve: str
    marserve: str

    def ask(
        self, method: str, path: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[Answer, Answer]:
        """The same request to TorchServe, then to marserve."""
        return (
            request(self.torchserve, method, path, body=body, headers=headers),
            request(self.marserve, method, path, body=body, headers=headers),
        )


def request(
    base: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(
            status=response.status,
            headers={key.lower(): value for key, value in response.getheaders()},
            body=response.read(),
        )
    finally:
        connection.close()


def archive(
    *,
    name: str,
    handler: str,
    store: Path,
    serialized_file: Path | None = None,
    model_file: Path | None = None,
    extra_files: Sequence[Path] = (),
    config_file: Path | None = None,
) -> Path:
    """`torch-model-archiver` as a user runs it; returns the `.mar` in `store`."""
    command = [
        str(ARCHIVER), "--model-name", name, "--version", "1.0", "--handler", handler,
        "--export-path", str(store), "--force",
    ]  # fmt: skip
    for flag, path in (
        ("--serialized-file", serialized_file),
        ("--model-file", model_file),
        ("--config-file", config_file),
    ):
        if path is not None:
            command += [flag, str(path)]
    if extra_files:
        command += ["--extra-files", ",".join(str(path) for path in extra_files)]
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, check=True, capture_output=True)
    return store / f"{name}.mar"


def with_envelope(mar: Path, *, envelope: str | None, destination: Path) -> Path:
    """The archive unpacked for marserve, its manifest naming `envelope` as TorchServe's
    `service_envelope` does for every model."""
    with zipfile.ZipFile(mar) as archive_file:
        archive_file.extractall(destination)
    manifest_path = destination / "MAR-INF" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    if envelope:
        manifest["model"]["envelope"] = envelope
    manifest_path.write_text(json.dumps(manifest))
    return destination


@contextmanager
def torchserve(
    store: Path, *, models: Sequence[str], envelope: str | None, run_dir: Path
) -> Iterator[str]:
    """TorchServe serving `models` (names of `.mar` files in `store`) until every one answers
    its management API with a READY worker; stopped through its process group."""
    ports = {kind: free_port() for kind in ("inference", "management", "metrics")}
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    config = run_dir / "config.properties"
    lines = [f"{kind}_address=http://127.0.0.1:{port}" for kind, port in ports.items()]
    lines += [
        f"grpc_inference_port={free_port()}",
        f"grpc_management_port={free_port()}",
        f"initial_worker_port={free_port()}",
        "disable_token_authorization=true",
    ]
    if envelope:
        lines.append(f"service_envelope={envelope}")
    config.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "TMPDIR": str(run_dir / "tmp"),
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={run_dir / 'tmp'}",
        "PATH": f"{TS_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log_path = run_dir / "torchserve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(TORCHSERVE), "--start", "--foreground", "--ncs", "--disable-token-auth",
                "--model-store", str(store), "--ts-config", str(config),
                "--models", *(f"{name}={name}.mar" for name in models),
            ],
            cwd=run_dir, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        management = f"http://127.0.0.1:{ports['management']}"
        for name in models:
            _wait_ready(management, name, process=process, log_path=log_path)
        yield f"http://127.0.0.1:{ports['inference']}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(
    management: str, name: str, *, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + START_BUDGET_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            answer = request(management, "GET", f"/models/{name}")
        except OSError:
            answer = Answer(0, {}, b"")
        if answer.status == 200:
            workers = answer.data()[0].get("workers", [])
            if any(worker.get("status") == "READY" for worker in workers):
                return
        time.sleep(0.5)
    raise AssertionError(f"TorchServe did not load {name}:\n{log_path.read_text()[-5000:]}")


@contextmanager
def marserve(model_dirs: Mapping[str, Path], *, run_dir: Path) -> Iterator[RunningServer]:
    server = start_server(
        run_dir, model_args=[f"{name}={path}" for name, path in model_dirs.items()]
    )
    try:
        yield server
    finally:
        stop_server(server)
