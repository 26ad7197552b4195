"""Faults under load: a worker SIGKILLed, a handler that hangs, and SIGTERM while requests run.

Each case counts what the clients saw and checks it against the server's own metrics, so a lost,
doubled or hung request fails the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reliability.serving import (
    chaos_archive,
    codes,
    describe,
    sample,
    scrape,
    wait_idle,
    wait_until,
)
from support.serving import RunningServer, start_server, stop_server

STEADY_TIMEOUT_S = 3
HANG_TIMEOUT_S = 1
WORKER_GRACE_S = 0.5
# No request may take longer than its deadline, the watchdog's grace and a margin for a busy CI box.
CLIENT_LIMIT_S = STEADY_TIMEOUT_S + WORKER_GRACE_S + 10


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def archives(tmp: Path) -> dict[str, Path]:
    return {
        "steady": chaos_archive(
            tmp / "steady",
            name="steady",
            yaml_config={"minWorkers": 2, "batchSize": 1, "responseTimeout": STEADY_TIMEOUT_S},
        ),
        "hang": chaos_archive(
            tmp / "hang",
            name="hang",
            yaml_config={"minWorkers": 1, "batchSize": 1, "responseTimeout": HANG_TIMEOUT_S},
        ),
    }


@pytest.fixture(scope="module")
def server(tmp: Path, archives: dict[str, Path]) -> Iterator[RunningServer]:
    running = start_server(
        tmp / "shared",
        model_args=[f"{name}={path}" for name, path in archives.items()],
        env={"MARSERVE_WORKER_GRACE_SECONDS": str(WORKER_GRACE_S)},
    )
    yield running
    stop_server(running)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=CLIENT_LIMIT_S)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        yield client


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    """One request; a hang past CLIENT_LIMIT_S raises and fails the test."""
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


async def _client_loop(
    session: aiohttp.ClientSession, url: str, *, requests: int, sleep: float
) -> list[tuple[int, dict[str, Any]]]:
    return [await _post(session, url, {"sleep": sleep}) for _ in range(requests)]


async def _ready_pids(session: aiohttp.ClientSession, server: RunningServer, model: str) -> Any:
    workers = (await describe(session, server, model))["workers"]
    if all(worker["state"] in ("READY", "BUSY") for worker in workers):
        return {worker["pid"] for worker in workers}
    return None


async def test_sigkill_under_load_fails_only_the_dead_workers_batch_and_totals_add_up(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.inference}/predictions/steady"
    before = codes(await scrape(session, server), "steady")
    restarts_before = (await describe(session, server, "steady"))["workers"]
    load = [
        asyncio.create_task(_client_loop(session, url, requests=12, sleep=0.1)) for _ in range(4)
    ]

    async def busy_pid() -> int | None:
        workers = (await describe(session, server, "steady"))["workers"]
        return next((w["pid"] for w in workers if w["state"] == "BUSY"), None)

    victim = await wait_until(busy_pid, timeout=10, what="a busy steady worker")
    os.kill(victim, signal.SIGKILL)
    answers = [answer for task in load for answer in await task]

    seen = Counter(status for status, _ in answers)
    assert set(seen) <= {200, 503}, seen
    assert seen[503] <= 1  # batchSize 1: only the request on the killed worker is lost
    assert all("died" in body["message"] for status, body in answers if status == 503)
    pids = await wait_until(
        lambda: _ready_pids(session, server, "steady"), what="the replacement worker"
    )
    assert victim not in pids and len(pids) == 2
    restarts = sum(w["restarts"] for w in (await describe(session, server, "steady"))["workers"])
    assert restarts == sum(w["restarts"] for w in restarts_before) + 1
    await wait_idle(session, server, "steady")
    after = codes(await scrape(session, server), "steady")
    counted = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    assert {code: n for code, n in counted.items() if n} == {str(c): n for c, n in seen.items()}
    assert (await _post(session, url, {}))[0] == 200


async def test_a_hung_handler_gets_504_at_its_deadline_and_other_models_are_unaffected(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    hang_url = f"{server.inference}/predictions/hang"
    (stuck_pid,) = await wait_until(
        lambda: _ready_pids(session, server, "hang"), what="the hang worker"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    hung = asyncio.create_task(_post(session, hang_url, {"sleep": 60}))
    queued_behind = [asyncio.create_task(_post(session, hang_url, {})) for _ in range(2)]
    others = await _client_loop(
        session, f"{server.inference}/predictions/steady", requests=10, sleep=0.05
    )
    assert [status for status, _ in others] == [200] * 10
    status, body = await hung
    waited = loop.time() - started
    assert status == 504
    assert body["type"] == "ResponseTimeout"
    # Answered at its deadline: never before it, nor long after it (slack for a busy machine).
    assert HANG_TIMEOUT_S <= waited < HANG_TIMEOUT_S + WORKER_GRACE_S + 5
    for task in queued_behind:
        assert (await task)[0] in (200, 504)

    async def recycled() -> Any:
        pids = await _ready_pids(session, server, "hang")
        return pids if pids and stuck_pid not in pids else None

    await wait_until(recycled, what="the hung worker to be replaced")
    assert (await _post(session, hang_url, {}))[0] == 200
    await wait_idle(session, server, "hang")


async def test_sigterm_under_load_answers_every_accepted_request_then_exits_0(
    tmp: Path, archives: dict[str, Path]
) -> None:
    server = start_server(tmp / "sigterm", model_args=[f"steady={archives['steady']}"])
    try:
        url = f"{server.inference}/predictions/steady"
        timeout = aiohttp.ClientTimeout(total=CLIENT_LIMIT_S * 3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            accepted = [asyncio.create_task(_post(session, url, {"sleep": 0.2})) for _ in range(12)]

            async def all_accepted() -> bool:
                samples = await scrape(session, server)
                return sample(samples, "marserve_inflight_requests", model="steady") == 12

            await wait_until(all_accepted, timeout=10, what="12 requests in flight")
            server.process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*accepted)
        assert [status for status, _ in answers] == [200] * 12
        exit_code = await asyncio.to_thread(server.process.wait, 30)
        assert exit_code == 0, server.log()
    finally:
        stop_server(server)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.soak
async def test_a_minute_of_worker_kills_under_load_loses_only_the_killed_batches(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.inference}/predictions/steady"
    await wait_until(lambda: _ready_pids(session, server, "steady"), what="steady workers")
    before = codes(await scrape(session, server), "steady")
    baseline = _rss_kib(server.process.pid)
    stop = asyncio.Event()

    async def client() -> list[int]:
        statuses = []
        while not stop.is_set():
            statuses.append((await _post(session, url, {"sleep": 0.05}))[0])
        return statuses

    clients = [asyncio.create_task(client()) for _ in range(4)]
    kills = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    while loop.time() < end:
        await asyncio.sleep(5)
        await wait_until(lambda: _ready_pids(session, server, "steady"), what="both workers up")
        workers = (await describe(session, server, "steady"))["workers"]
        busy = [w["pid"] for w in workers if w["state"] == "BUSY"]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            kills += 1
    stop.set()
    seen = Counter(status for statuses in await asyncio.gather(*clients) for status in statuses)
    assert kills >= 8
    assert set(seen) <= {200, 503}, seen
    assert seen[503] <= kills
    await wait_idle(session, server, "steady")
    after = codes(await scrape(session, server), "steady")
    counted = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    assert {code: n for code, n in counted.items() if n} == {str(c): n for c, n in seen.items()}
    grown = _rss_kib(server.process.pid) - baseline
    assert grown < max(baseline // 10, 16 * 1024), f"front end RSS grew {grown} KiB"
