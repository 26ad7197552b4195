"""Real `marserve serve` processes on 127.0.0.1 for tests: start one, wait for /ping, stop it.

Servers run with their working directory outside the repository, as a pod runs them, and log to
a file that failing tests print.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MARSERVE = Path(sys.executable).with_name("marserve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str) -> int:
    """The status a GET answers, or 0 while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@dataclass
class RunningServer:
    """A `marserve serve` process, where to reach it, and every /ping status seen while starting."""

    process: subprocess.Popen[bytes]
    inference: str
    management: str
    metrics: str
    grpc_inference: str
    grpc_management: str
    log_path: Path
    ping_statuses: list[int] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def inference_port(self) -> int:
        return int(self.inference.rsplit(":", 1)[1])

    @property
    def metrics_address(self) -> str:
        """host:port, as a Prometheus static target names it."""
        return self.metrics.removeprefix("http://")


def launch_server(
    tmp: Path,
    *,
    model_args: Sequence[str],
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
) -> RunningServer:
    """Starts `marserve serve` on free ports without waiting for it."""
    tmp.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(5)]
    log_path = tmp / log_name
    command = [
        str(MARSERVE), "serve", "--models", *model_args,
        "--inference-port", str(ports[0]),
        "--management-port", str(ports[1]),
        "--metrics-port", str(ports[2]),
        "--grpc-inference-port", str(ports[3]),
        "--grpc-management-port", str(ports[4]),
        *extra_args,
    ]  # fmt: skip
    full_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=tmp, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return RunningServer(
        process=process,
        inference=f"http://127.0.0.1:{ports[0]}",
        management=f"http://127.0.0.1:{ports[1]}",
        metrics=f"http://127.0.0.1:{ports[2]}",
        grpc_inference=f"127.0.0.1:{ports[3]}",
        grpc_management=f"127.0.0.1:{ports[4]}",
        log_path=log_path,
    )


def wait_for_ping(server: RunningServer, *, ready: bool = True, timeout_s: float = 90) -> None:
    """Waits for /ping to answer 200 (or anything, when `ready` is false); stops the server and
    fails with its log when that does not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.process.poll() is None:
        status = http_status(f"{server.inference}/ping")
        if status:
            server.ping_statuses.append(status)
        if status == 200 or (status and not ready):
            return
        time.sleep(0.1)
    stop_server(server)
    raise AssertionError(f"the server did not become ready:\n{server.log()}")


def start_server(
    tmp: Path,
    *,
    model_args: Sequence[str],
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
) -> RunningServer:
    """Starts `marserve serve` and waits until /ping answers (200 when `wait_ready`)."""
    server = launch_server(tmp, model_args=model_args, extra_args=extra_args, env=env)
    wait_for_ping(server, ready=wait_ready)
    return server


def terminate(process: subprocess.Popen[bytes], *, timeout_s: float = 30) -> int:
    """SIGTERM, then SIGKILL if the process has not exited in time; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stop_server(server: RunningServer) -> int:
    return terminate(server.process)
