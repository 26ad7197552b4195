"""Two real `marserve serve` workers serving a deliberately slow model, scraped by one real
Prometheus per session with the labels Kubernetes service discovery would give them.

The model sleeps a fixed time per request, so under a closed-loop load of N clients there are
about N requests in flight at any instant, whatever the machine's speed: the signal the
autoscaler sees is set by the load, not by how fast this machine runs torch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import models, tools
from support.prometheus import PrometheusServer, Target

NAMESPACE = "ml"
MODEL = "slow"
# Pod names as a Deployment "slow" would give them: NAME-TEMPLATEHASH-SUFFIX.
POD_NAMES = ("slow-5d8f7c9b4-x7k2p", "slow-5d8f7c9b4-m4q9z")
SECONDS_PER_REQUEST = 0.25

SLOW_HANDLER = f"""
import time


class SlowHandler:
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        time.sleep({SECONDS_PER_REQUEST})
        return [{{"ok": True}} for _ in data]
"""


@dataclass
class Worker:
    """One `marserve serve` process standing in for one pod of the model."""

    pod: str
    process: subprocess.Popen[bytes]
    inference_url: str
    metrics_address: str
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_worker(*, pod: str, archive: Path, workdir: Path) -> Worker:
    inference, management, metrics = (free_port() for _ in range(3))
    log_path = workdir / f"{pod}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("marserve")),
                "serve",
                "--models",
                f"{MODEL}={archive}",
                "--inference-port",
                str(inference),
                "--management-port",
                str(management),
                "--metrics-port",
                str(metrics),
            ],
            cwd=workdir,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Worker(
        pod=pod,
        process=process,
        inference_url=f"http://127.0.0.1:{inference}",
        metrics_address=f"127.0.0.1:{metrics}",
        log_path=log_path,
    )


def _wait_ready(worker: Worker, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.process.poll() is None:
        try:
            with urllib.request.urlopen(f"{worker.inference_url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"worker {worker.pod} never became ready:\n{worker.log_path.read_text()}")


def _stop(worker: Worker) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow model as a real MAR from the real torch-model-archiver."""
    workdir = tmp_path_factory.mktemp("slow-model")
    handler = models.write_text(workdir / "src" / "slow_handler.py", SLOW_HANDLER)
    return models.torch_model_archiver(
        model_name=MODEL, handler=handler, export_path=workdir / "store"
    )


@dataclass(frozen=True)
class ServedModel:
    """An InferenceModel as the cluster would run it: its namespace, name and pods."""

    namespace: str
    name: str
    workers: list[Worker]

    @property
    def pods(self) -> list[str]:
        return [worker.pod for worker in self.workers]


@pytest.fixture(scope="module")
def served_model(
    prometheus: PrometheusServer, slow_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedModel]:
    """Both workers, ready and scraped: every pod has an in-flight series in Prometheus."""
    workdir = tmp_path_factory.mktemp("workers")
    started = [_start_worker(pod=pod, archive=slow_archive, workdir=workdir) for pod in POD_NAMES]
    try:
        for worker in started:
            _wait_ready(worker, timeout_s=90)
        prometheus.set_targets(
            [
                Target(
                    address=worker.metrics_address,
                    labels={"namespace": NAMESPACE, "pod": worker.pod},
                )
                for worker in started
            ]
        )
        prometheus.wait_for(
            f'marserve_inflight_requests{{namespace="{NAMESPACE}",model="{MODEL}"}}',
            lambda samples: len(samples) == len(POD_NAMES),
            timeout_s=30,
        )
        yield ServedModel(namespace=NAMESPACE, name=MODEL, workers=started)
    finally:
        for worker in started:
            _stop(worker)


@pytest.fixture(scope="module")
def monitoring_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The chart's adapter rules and dashboard, rendered as a user would install them."""
    values = {
        "monitoring": {
            "prometheusAdapter": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        }
    }
    return tools.helm_template(values, workdir=tmp_path_factory.mktemp("monitoring-chart"))


def _config_map(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(suffix)
    ]
    return found


@pytest.fixture(scope="module")
def adapter_rules(monitoring_objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """prometheus-adapter's `rules`, in its own config format."""
    config = _config_map(monitoring_objects, "-prometheus-adapter-rules")["data"]["config.yaml"]
    rules: list[dict[str, Any]] = yaml.safe_load(config)["rules"]
    return rules


@pytest.fixture(scope="module")
def dashboard(monitoring_objects: list[dict[str, Any]]) -> dict[str, Any]:
    data = _config_map(monitoring_objects, "-dashboard")["data"]
    dashboard: dict[str, Any] = json.loads(data["marserve-models.json"])
    return dashboard
