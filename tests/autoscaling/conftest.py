"""Two real `marserve serve` workers serving a deliberately slow model, scraped by one real
Prometheus per session with the labels Kubernetes service discovery would give them.

The model sleeps a fixed time per request, so under a closed-loop load of N clients there are
about N requests in flight at any instant, whatever the machine's speed: the signal the
autoscaler sees is set by the load, not by how fast this machine runs torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import models, tools
from support.prometheus import PrometheusServer, Target
from support.serving import RunningServer, free_port, launch_server, stop_server, wait_for_ping

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


@dataclass(frozen=True)
class Worker:
    """One `marserve serve` process standing in for one pod of the model."""

    pod: str
    server: RunningServer


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
    started = [
        Worker(
            pod=pod,
            server=launch_server(
                workdir, model_args=[f"{MODEL}={slow_archive}"], log_name=f"{pod}.log"
            ),
        )
        for pod in POD_NAMES
    ]
    try:
        for worker in started:
            wait_for_ping(worker.server)
        prometheus.set_targets(
            [
                Target(
                    address=worker.server.metrics_address,
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
            stop_server(worker.server)


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
