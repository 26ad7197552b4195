"""Helpers for reliability tests: real `marserve serve` processes on 127.0.0.1 serving real MARs
from the real torch-model-archiver, and what every module uses to talk to and measure them.

Each module starts its own server once (module scope): a worker imports torch in about two
seconds, so sharing the server keeps the suite inside its time budget.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from support import models
from support.serving import RunningServer

# A handler whose behaviour each request picks: `{"sleep": s}` sleeps that long (a slow or hung
# model), anything else is answered at once with the worker's pid and the batch size.
CHAOS_HANDLER = """
import json
import os
import time


class ChaosHandler:
    def initialize(self, context):
        self.pid = os.getpid()

    def handle(self, data, context):
        answers = []
        for row in data:
            body = row.get("body") if row.get("body") is not None else row.get("data")
            if isinstance(body, (bytes, bytearray)):
                try:
                    body = json.loads(body)
                except ValueError:
                    body = None
            if isinstance(body, dict) and body.get("sleep"):
                time.sleep(float(body["sleep"]))
            answers.append({"pid": self.pid, "batch": len(data)})
        return answers
"""


def chaos_archive(directory: Path, *, name: str, yaml_config: Mapping[str, Any]) -> Path:
    """A MAR written by the real torch-model-archiver around ChaosHandler and a model YAML."""
    handler = models.write_text(directory / "src" / "chaos_handler.py", CHAOS_HANDLER)
    config = models.write_text(directory / "src" / "model-config.yaml", json.dumps(yaml_config))
    return models.torch_model_archiver(
        model_name=name, handler=handler, export_path=directory / "store", config_file=config
    )


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            samples[match.group(1), labels] = float(match.group(3))
    return samples


async def scrape(session: aiohttp.ClientSession, server: RunningServer) -> dict[Any, float]:
    async with session.get(f"{server.metrics}/metrics") as response:
        assert response.status == 200
        return parse_metrics(await response.text())


def sample(samples: Mapping[Any, float], name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def codes(samples: Mapping[Any, float], model: str) -> dict[str, float]:
    """marserve_requests_total of one model by response code."""
    found: dict[str, float] = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "marserve_requests_total" and label.get("model") == model:
            found[label["code"]] = found.get(label["code"], 0.0) + value
    return found


async def describe(
    session: aiohttp.ClientSession, server: RunningServer, model: str, **headers: str
) -> dict[str, Any]:
    async with session.get(f"{server.management}/models/{model}", headers=headers) as response:
        (described,) = await response.json()
    result: dict[str, Any] = described
    return result


async def wait_until(check: Any, *, timeout: float = 30.0, what: str) -> Any:
    """Polls an async `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def wait_idle(session: aiohttp.ClientSession, server: RunningServer, model: str) -> None:
    """Waits until the model's gauges say nothing is queued or in flight (no leaked slot)."""

    async def idle() -> bool:
        samples = await scrape(session, server)
        return (
            sample(samples, "marserve_inflight_requests", model=model) == 0
            and sample(samples, "marserve_queue_depth", model=model) == 0
        )

    await wait_until(idle, timeout=20, what=f"{model}'s in-flight and queue gauges to reach 0")
