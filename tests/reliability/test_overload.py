"""Sustained overload at twice a model's capacity: the excess is refused with a quick 429 instead
of queueing without bound, accepted requests finish well inside their deadline, the queue never
grows past `jobQueueSize`, and (in the soak run) the server's memory stays flat.

Limits are stated relative to the model's configuration (service time, queue size, timeout),
never as absolute speeds.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from reliability.serving import chaos_archive, codes, describe, scrape, wait_idle
from support.serving import RunningServer, start_server, stop_server

SERVICE_S = 0.05  # each request sleeps this long in the handler: capacity is 1 / SERVICE_S
QUEUE_SIZE = 4
TIMEOUT_S = 2
OFFERED_RATE = 2 / SERVICE_S  # twice what one worker with batch size 1 can serve


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("overload")
    archive = chaos_archive(
        tmp / "limited",
        name="limited",
        yaml_config={
            "minWorkers": 1,
            "batchSize": 1,
            "responseTimeout": TIMEOUT_S,
            "jobQueueSize": QUEUE_SIZE,
        },
    )
    running = start_server(tmp, model_args=[f"limited={archive}"])
    yield running
    stop_server(running)


async def _timed_post(session: aiohttp.ClientSession, url: str) -> Answer:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(url, json={"sleep": SERVICE_S}) as response:
        await response.read()
        return Answer(response.status, loop.time() - started, response.headers.get("Retry-After"))


async def _offer(
    session: aiohttp.ClientSession, url: str, *, rate: float, seconds: float
) -> list[Answer]:
    """Open-loop load: a new request every 1/rate seconds whether or not earlier ones finished."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for index in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
        tasks.append(asyncio.create_task(_timed_post(session, url)))
    return await asyncio.gather(*tasks)


async def _watch_queue(
    session: aiohttp.ClientSession, server: RunningServer, stop: asyncio.Event
) -> int:
    """The deepest queue the management API showed while the load ran."""
    deepest = 0
    while not stop.is_set():
        status = (await describe(session, server, "limited"))["jobQueueStatus"]
        deepest = max(deepest, status["pendingRequests"])
        await asyncio.sleep(0.05)
    return deepest


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def _overload(server: RunningServer, *, seconds: float) -> tuple[list[Answer], int]:
    url = f"{server.inference}/predictions/limited"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S * 5)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_queue(session, server, stop))
        answers = await _offer(session, url, rate=OFFERED_RATE, seconds=seconds)
        stop.set()
        deepest = await watcher
        await wait_idle(session, server, "limited")
    return answers, deepest


def _check(answers: list[Answer], deepest: int) -> None:
    seen = Counter(answer.status for answer in answers)
    assert set(seen) <= {200, 429}, seen
    assert seen[429] >= len(answers) // 4, seen  # about half the offered load is excess
    assert seen[200] >= len(answers) // 4, seen
    assert deepest <= QUEUE_SIZE
    refused = [answer for answer in answers if answer.status == 429]
    assert all(answer.retry_after for answer in refused)
    # Refusals do not wait in the queue: even the slowest is far inside the model's deadline.
    assert max(answer.seconds for answer in refused) < TIMEOUT_S / 2
    accepted = sorted(answer.seconds for answer in answers if answer.status == 200)
    p99 = statistics.quantiles(accepted, n=100)[98]
    assert p99 < TIMEOUT_S, f"p99 of accepted requests {p99:.3f} s"


async def test_twice_capacity_for_a_few_seconds_is_refused_with_quick_429s(
    server: RunningServer,
) -> None:
    answers, deepest = await _overload(server, seconds=3)
    _check(answers, deepest)
    async with aiohttp.ClientSession() as session:
        counted = codes(await scrape(session, server), "limited")
    assert counted.get("429", 0) >= sum(answer.status == 429 for answer in answers)


@pytest.mark.soak
async def test_twice_capacity_for_two_minutes_keeps_latency_bounded_and_memory_flat(
    server: RunningServer,
) -> None:
    await _overload(server, seconds=10)  # warm-up: caches, allocator pools, metric children
    baseline = _rss_kib(server.process.pid)
    for _ in range(4):
        answers, deepest = await _overload(server, seconds=30)
        _check(answers, deepest)
    grown = _rss_kib(server.process.pid) - baseline
    assert grown < max(baseline // 10, 16 * 1024), f"front end RSS grew {grown} KiB"
