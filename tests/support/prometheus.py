"""A real Prometheus server for tests: the Debian binary on 127.0.0.1, scraping every second.

Targets live in a file_sd file, so the server can start before the processes it scrapes and pick
them up the moment they are written (Prometheus watches the file). Prometheus shows its first
scrape about 6-7 s after it starts, so tests start one per session and wait on data, not on time.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import tools
from support.serving import terminate

SCRAPE_INTERVAL = "1s"


@dataclass(frozen=True)
class Target:
    """A /metrics endpoint and the labels Prometheus attaches to its series (as Kubernetes
    service discovery attaches namespace and pod)."""

    address: str  # host:port
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusServer:
    """One Prometheus process; `start` returns once its HTTP API answers."""

    def __init__(self, *, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self._port = port
        self._targets_file = workdir / "targets.json"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 30) -> None:
        self.set_targets([])
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {
                    "job_name": "marserve",
                    "file_sd_configs": [{"files": [str(self._targets_file)]}],
                }
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config))
        log = (self.workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(tools.tool("prometheus")),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"prometheus did not become ready in {timeout_s} s:\n{self.log()}")

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Replaces the scrape targets; written whole and renamed so Prometheus never reads half."""
        groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
        partial = self._targets_file.with_suffix(".partial")
        partial.write_text(json.dumps(groups))
        partial.replace(self._targets_file)

    def query(self, expression: str, *, at: float | None = None) -> list[Sample]:
        """An instant query; `at` (Unix time) lets several queries read the same instant."""
        parameters = {"query": expression}
        if at is not None:
            parameters["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(parameters)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:
            raise ValueError(f"{expression!r}: {error.read().decode(errors='replace')}") from None
        result = body["data"]
        if result["resultType"] == "scalar":
            return [Sample(labels={}, value=float(result["result"][1]))]
        return [
            Sample(labels=item["metric"], value=float(item["value"][1]))
            for item in result["result"]
        ]

    def wait_for(
        self,
        expression: str,
        condition: Callable[[list[Sample]], bool],
        *,
        timeout_s: float,
    ) -> list[Sample]:
        """Polls a query until its result satisfies the condition; fails with the last result."""
        deadline = time.monotonic() + timeout_s
        while True:
            samples = self.query(expression)
            if condition(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression!r} never satisfied the condition: {samples}")
            time.sleep(0.25)

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process, timeout_s=15)
