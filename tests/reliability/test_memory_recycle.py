"""A handler that leaks memory: its worker is replaced once it passes the model's memory limit.

The leaky handler keeps every request's 20 MiB; its model's YAML sets `maxWorkerMemoryMB` a few
hundred MiB above a worker's baseline. Requests arrive two at a time, so one is always queued
when the worker leaves: every request must still answer 200, the worker's pid must change, the
recycle must be counted, memory must stay near the limit, and the other model must not notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reliability.serving import chaos_archive, describe, sample, scrape, wait_until
from support import models
from support.serving import RunningServer, start_server, stop_server

LEAK_MB = 20
LIMIT_MB = 640
RECYCLES_WANTED = 2
# Enough requests for RECYCLES_WANTED workers to climb from nothing to the limit, and a margin.
MAX_PAIRS = RECYCLES_WANTED * LIMIT_MB // LEAK_MB // 2 + 10

LEAKY_HANDLER = f"""
import os


class LeakyHandler:
    def initialize(self, context):
        self.held = []

    def handle(self, data, context):
        self.held.append(bytearray(b"z") * ({LEAK_MB} << 20))  # written, so really resident
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return [
            {{"pid": os.getpid(), "rss_mb": resident >> 20, "held": len(self.held)}} for _ in data
        ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("memory")
    handler = models.write_text(tmp / "leaky" / "src" / "leaky_handler.py", LEAKY_HANDLER)
    config = models.write_text(
        tmp / "leaky" / "src" / "model-config.yaml",
        f'{{"minWorkers": 1, "batchSize": 1, "maxWorkerMemoryMB": {LIMIT_MB}}}',
    )
    leaky = models.torch_model_archiver(
        model_name="leaky", handler=handler, export_path=tmp / "store", config_file=config
    )
    steady = chaos_archive(tmp / "steady", name="steady", yaml_config={"minWorkers": 1})
    running = start_server(tmp / "serve", model_args=[f"leaky={leaky}", f"steady={steady}"])
    yield running
    stop_server(running)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def _post(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.post(url, json={}) as response:
        return response.status, await response.json()


async def _worker_pid(session: aiohttp.ClientSession, server: RunningServer, model: str) -> Any:
    (worker,) = (await describe(session, server, model))["workers"]
    return worker["pid"] if worker["state"] in ("READY", "BUSY") else None


def _resident_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) // 1024


def _in_order(body: dict[str, Any]) -> int:
    """A worker's answers in the order it served them: by how many leaks it held."""
    held: int = body["held"]
    return held


def _recycles(samples: dict[Any, float], model: str) -> float:
    return sample(samples, "marserve_worker_recycles_total", model=model, reason="memory")


async def test_leaking_worker_is_recycled_without_failing_a_request(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    first_pid = await wait_until(
        lambda: _worker_pid(session, server, "leaky"), what="the leaky worker"
    )
    baseline_mb = _resident_mb(first_pid)
    assert baseline_mb + 5 * LEAK_MB < LIMIT_MB, f"a worker's baseline is {baseline_mb} MiB"
    steady_pid = await wait_until(
        lambda: _worker_pid(session, server, "steady"), what="the steady worker"
    )
    before = await scrape(session, server)
    url = f"{server.inference}/predictions/leaky"

    answers: list[tuple[int, dict[str, Any]]] = []
    for _ in range(MAX_PAIRS):
        answers += await asyncio.gather(_post(session, url), _post(session, url))
        status, body = await _post(session, f"{server.inference}/predictions/steady")
        assert (status, body["pid"]) == (200, steady_pid)
        if len({body.get("pid") for _, body in answers}) > RECYCLES_WANTED:
            break

    assert [status for status, _ in answers] == [200] * len(answers)
    pids = list(dict.fromkeys(body["pid"] for _, body in answers))
    assert pids[0] == first_pid and len(pids) == RECYCLES_WANTED + 1, pids
    for earlier in pids[:-1]:  # each replaced worker held close to the limit, then no more
        held = sorted((body for _, body in answers if body["pid"] == earlier), key=_in_order)
        assert held[-1]["rss_mb"] + LEAK_MB > LIMIT_MB >= held[-2]["rss_mb"]
    assert max(body["rss_mb"] for _, body in answers) <= LIMIT_MB + 2 * LEAK_MB
    after = await scrape(session, server)
    assert _recycles(after, "leaky") - _recycles(before, "leaky") == RECYCLES_WANTED
    assert _recycles(after, "steady") == 0
    crashes = "marserve_worker_restarts_total"  # what the crash-loop alert watches
    assert sample(after, crashes, model="leaky") == sample(before, crashes, model="leaky")
    assert await _worker_pid(session, server, "steady") == steady_pid
    log = server.log()
    assert log.count(f"over its {LIMIT_MB} MiB limit") == RECYCLES_WANTED, log
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids[:-1])
