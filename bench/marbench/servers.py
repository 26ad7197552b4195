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
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from marbench import peers, procstats, scrape
from marbench.artifacts import BenchModel
from marbench.config import BenchConfig
from marbench.peers import Wire

POLL_INTERVAL_S = 0.01


class ServerError(RuntimeError):
    """A server did not come up, or answered wrongly; the message points at its log."""


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int


@dataclass(frozen=True)
class Endpoint:
    """Where a server takes a prediction and the body it gets there, in its own wire format."""

    path: str
    body_file: Path
    content_type: str
    wire: Wire = Wire.RAW


@dataclass
class RunningServer:
    """A started server: its launcher process, the root of what is measured, and its ports."""

    name: str
    process: subprocess.Popen[bytes]
    ports: Ports
    log_path: Path
    started_at: float
    measured_root: int
    endpoint: Endpoint
    counters_file: Path | None = None

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

    def batch_counters(self, *, model: str) -> scrape.BatchCounters:
        """Batching so far: a peer's shared counter file, or the archive handler's /metrics."""
        if self.counters_file is None:
            return scrape.batch_counters(self.metrics_text(), model=model)
        requests, batches = struct.unpack("<QQ", self.counters_file.read_bytes()[:16])
        return scrape.BatchCounters(
            requests=requests, batches=batches, native_requests=0, native_batches=0
        )

    def stats(self, *, with_pss: bool = False) -> procstats.TreeSample:
        return procstats.sample(self.measured_root, with_pss=with_pss)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM to the measured root, then SIGKILL to the process group and the tree.

        The tree too: Ray starts its own services in new sessions, out of the group's reach.
        """
        tree = procstats.tree_pids(self.process.pid)
        for pid in (self.measured_root, self.process.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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
    endpoint = Endpoint(f"/predictions/{model.name}", model.body_file, model.content_type)
    counters_file = None
    if name in peers.PEERS:
        peer = peers.PEERS[name]
        command = peers.command(
            peer,
            venv=config.peer_venv_dir / peer.venv,
            model_file=model.extracted_dir / "model.pt",
            name=model.name,
            port=ports.inference,
            batch_size=config.model_yaml.batch_size,
            max_batch_delay_ms=config.model_yaml.max_batch_delay_ms,
        )
        endpoint = _peer_endpoint(peer, model=model, run_dir=run_dir)
        counters_file = run_dir / "batch-counters"
        counters_file.write_bytes(bytes(16))
        env["MARBENCH_BATCH_COUNTERS"] = str(counters_file)
        env["PYTHONPATH"] = os.pathsep.join(map(str, (peers.PEERS_DIR, peers.THREAD_RULE_ROOT)))
    elif name.startswith("marserve"):
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
        endpoint=endpoint,
        counters_file=counters_file,
    )


def _peer_endpoint(peer: peers.Peer, *, model: BenchModel, run_dir: Path) -> Endpoint:
    """The model's request body rewritten in the peer's wire format, in a file for wrk."""
    body, content_type = peers.request_body(
        peer.wire, raw=model.body_file.read_bytes(), content_type=model.content_type
    )
    body_file = run_dir / "request-body"
    body_file.write_bytes(body)
    return Endpoint(peer.url_path(model.name), body_file, content_type, peer.wire)


def wait_first_200(server: RunningServer, *, model: BenchModel, timeout_s: float) -> float:
    """Seconds from launch to the first 200 on a prediction; checks that answer's body too."""
    body = server.endpoint.body_file.read_bytes()
    deadline = server.started_at + timeout_s
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.name} exited with {server.process.returncode}; see {server.log_path}"
            )
        status, answer = _predict(server, body=body)
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
    body = server.endpoint.body_file.read_bytes()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        status, _ = _predict(server, body=body)
        if status == 200:
            return
        time.sleep(0.05)
    raise ServerError(f"{server.name} did not drain its queue within {timeout_s} s")


def _check_answer(server: RunningServer, model: BenchModel, answer: bytes) -> None:
    """The answer must be the module's output: within 1e-4, or 1e-3 of it for large outputs.

    Each venv decodes JPEG with its own Pillow build, which may round a pixel differently.
    """
    from marbench import artifacts

    got = peers.parse_answer(server.endpoint.wire, answer)
    want = artifacts.expected_output(model)
    if len(got) != len(want) or any(
        abs(a - b) > 1e-4 + 1e-3 * abs(b) for a, b in zip(got, want, strict=True)
    ):
        raise ServerError(f"{server.name} answered {got[:8]} for {model.name}, expected {want[:8]}")


def _predict(server: RunningServer, *, body: bytes) -> tuple[int, bytes]:
    """One prediction; status 0 while the server does not accept connections yet."""
    try:
        return server.request(
            "POST",
            server.endpoint.path,
            port=server.ports.inference,
            body=body,
            content_type=server.endpoint.content_type,
        )
    except OSError:
        return 0, b""
