"""Starting, probing and stopping the two servers under test, each as a process tree on 127.0.0.1.

Both get the same model store, the same archive and a private working directory. TorchServe runs
in the foreground under its own launcher (its documented way to stay attached); its process tree
is measured from the JVM down, so the launcher's wait loop is not charged to it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from marbench import procstats
from marbench.artifacts import BenchModel
from marbench.config import BenchConfig

POLL_INTERVAL_S = 0.01


class ServerError(RuntimeError):
    """A server did not come up, or answered wrongly; the message points at its log."""


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int


@dataclass
class RunningServer:
    """A started server: its launcher process, the root of what is measured, and its ports."""

    name: str
    process: subprocess.Popen[bytes]
    ports: Ports
    log_path: Path
    started_at: float
    measured_root: int

    def request(
        self,
        method: str,
        path: str,
        *,
        port: int,
        body: bytes = b"",
        content_type: str = "application/octet-stream",
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(
                method,
                path,
                body=body or None,
                headers={"Content-Type": content_type} if body else {},
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def metrics_text(self) -> str:
        status, body = self.request("GET", "/metrics", port=self.ports.metrics)
        if status != 200:
            raise ServerError(f"{self.name}: /metrics answered {status}")
        return body.decode()

    def stats(self, *, with_pss: bool = False) -> procstats.TreeSample:
        return procstats.sample(self.measured_root, with_pss=with_pss)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM to the measured root, then the whole process group if it lingers."""
        for pid in (self.measured_root, self.process.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _marserve_command(model: BenchModel, config: BenchConfig, ports: Ports) -> list[str]:
    return [
        str(config.marserve_bin),
        "serve",
        "--model-store",
        str(model.mar.parent),
        "--models",
        f"{model.name}={model.mar.name}",
        "--host",
        "127.0.0.1",
        "--inference-port",
        str(ports.inference),
        "--management-port",
        str(ports.management),
        "--metrics-port",
        str(ports.metrics),
        "--grpc-inference-port",
        str(ports.grpc_inference),
        "--grpc-management-port",
        "off",
    ]


def _torchserve_command(
    model: BenchModel, config: BenchConfig, ports: Ports, run_dir: Path
) -> list[str]:
    properties = run_dir / "config.properties"
    properties.write_text(
        f"inference_address=http://127.0.0.1:{ports.inference}\n"
        f"management_address=http://127.0.0.1:{ports.management}\n"
        f"metrics_address=http://127.0.0.1:{ports.metrics}\n"
        f"grpc_inference_port={ports.grpc_inference}\n"
        f"grpc_management_port={free_port()}\n"
        # Worker sockets are /tmp/.ts.sock.<port>: a private port keeps runs side by side apart.
        f"initial_worker_port={free_port()}\n"
        "metrics_mode=prometheus\n"
        # Registers the handler's BatchesHandled counter, which TorchServe would otherwise drop.
        "model_metrics_auto_detect=true\n"
    )
    return [
        str(config.torchserve_venv / "bin" / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--ts-config",
        str(properties),
        "--model-store",
        str(model.mar.parent),
        "--models",
        f"{model.name}={model.mar.name}",
    ]


def start(name: str, *, model: BenchModel, config: BenchConfig, run_dir: Path) -> RunningServer:
    """Launches server `name` for one model; returns at once (see `wait_first_200`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    ports = Ports(
        inference=free_port(),
        management=free_port(),
        metrics=free_port(),
        grpc_inference=free_port(),
    )
    env = dict(os.environ)
    if name.startswith("marserve"):
        command = _marserve_command(model, config, ports)
    else:
        command = _torchserve_command(model, config, ports, run_dir)
        env["PATH"] = f"{config.torchserve_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # TorchServe keeps one pid file in the temp dir: a private one lets it run beside others.
        env["TMPDIR"] = str(run_dir / "tmp")
    log_path = run_dir / f"{name}.log"
    with log_path.open("wb") as log:
        started_at = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=run_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(
        name=name,
        process=process,
        ports=ports,
        log_path=log_path,
        started_at=started_at,
        measured_root=process.pid,
    )


def wait_first_200(server: RunningServer, *, model: BenchModel, timeout_s: float) -> float:
    """Seconds from launch to the first 200 on a prediction; checks that answer's body too."""
    body = model.body_file.read_bytes()
    deadline = server.started_at + timeout_s
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.name} exited with {server.process.returncode}; see {server.log_path}"
            )
        status, answer = _predict(server, model=model, body=body)
        if status == 200:
            elapsed = time.perf_counter() - server.started_at
            _check_answer(server, model, answer)
            if server.name == "torchserve":
                server.measured_root = (
                    procstats.find_descendant(server.process.pid, name="java") or server.process.pid
                )
            return elapsed
        time.sleep(POLL_INTERVAL_S)
    raise ServerError(f"{server.name} gave no 200 within {timeout_s} s; see {server.log_path}")


def drain(server: RunningServer, *, model: BenchModel, timeout_s: float = 120.0) -> None:
    """Waits until requests left queued by a finished load run are answered.

    wrk closes its connections at the end of a run, but their requests stay in the server's
    queue; the next run would find the queue part full. One request sent now is answered only
    after them (one worker, first in first out), so its answer means the server is idle again.
    """
    body = model.body_file.read_bytes()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        status, _ = _predict(server, model=model, body=body)
        if status == 200:
            return
        time.sleep(0.05)
    raise ServerError(f"{server.name} did not drain its queue within {timeout_s} s")


def _check_answer(server: RunningServer, model: BenchModel, answer: bytes) -> None:
    from marbench import artifacts

    got = artifacts.parse_output(answer)
    want = artifacts.expected_output(model)
    if len(got) != len(want) or any(abs(a - b) > 1e-4 for a, b in zip(got, want, strict=True)):
        raise ServerError(f"{server.name} answered {got} for {model.name}, expected {want}")


def _predict(server: RunningServer, *, model: BenchModel, body: bytes) -> tuple[int, bytes]:
    """One prediction; status 0 while the server does not accept connections yet."""
    try:
        return server.request(
            "POST",
            f"/predictions/{model.name}",
            port=server.ports.inference,
            body=body,
            content_type=model.content_type,
        )
    except OSError:
        return 0, b""
