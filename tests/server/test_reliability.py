"""Back-pressure, deadlines, dying workers and poison requests, over real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
import pytest

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]


@pytest.fixture
async def http(auth: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(headers=auth) as session:
        yield session


async def post(http: Any, url: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json(), dict(response.headers)


async def slow_worker(http: Any, server: Any) -> dict[str, Any]:
    async with http.get(f"{server.management}/models/slow") as response:
        (described,) = await response.json()
    worker: dict[str, Any] = described["workers"][0]
    return worker


async def wait_for_ready_worker(http: Any, server: Any, *, not_pid: int | None = None) -> int:
    """Polls the management API until the slow model's worker is ready; returns its pid."""
    for _ in range(600):
        worker = await slow_worker(http, server)
        if worker["state"] == "READY" and worker["pid"] != not_pid:
            pid: int = worker["pid"]
            return pid
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker did not come back: {worker}\n{server.log()}")


async def test_full_queue_answers_429_with_retry_after(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/slow"
    await wait_for_ready_worker(http, main_server)
    busy = asyncio.create_task(post(http, url, {"sleep": 0.6}))
    await asyncio.sleep(0.2)
    answers = await asyncio.gather(*(post(http, url, {}) for _ in range(3)))
    assert (await busy)[0] == 200
    assert sorted(status for status, _, _ in answers) == [200, 200, 429]
    _, body, headers = next(a for a in answers if a[0] == 429)
    assert body["type"] == "TooManyRequests"
    assert int(headers["Retry-After"]) >= 1


async def test_deadline_gives_504_and_the_stuck_worker_is_replaced(
    main_server: Any, http: Any
) -> None:
    url = f"{main_server.inference}/predictions/slow"
    stuck_pid = await wait_for_ready_worker(http, main_server)
    status, body, _ = await post(http, url, {"sleep": 4})
    assert status == 504
    assert body["type"] == "ResponseTimeout"
    await wait_for_ready_worker(http, main_server, not_pid=stuck_pid)
    assert (await post(http, url, {}))[0] == 200
    async with http.post(f"{main_server.inference}/predictions/mlp", json=[ROW]) as response:
        assert response.status == 200  # other models never noticed


async def test_worker_killed_mid_request_gives_503_then_recovers(
    main_server: Any, http: Any
) -> None:
    url = f"{main_server.inference}/predictions/slow"
    pid = await wait_for_ready_worker(http, main_server)
    request = asyncio.create_task(post(http, url, {"sleep": 0.8}))
    await asyncio.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    status, body, _ = await request
    assert status == 503
    assert "died" in body["message"]
    new_pid = await wait_for_ready_worker(http, main_server, not_pid=pid)
    assert new_pid != pid
    assert (await post(http, url, {}))[0] == 200
    assert (await slow_worker(http, main_server))["restarts"] >= 1


async def test_an_idle_worker_that_dies_is_replaced_before_anyone_asks(
    main_server: Any, http: Any
) -> None:
    pid = await wait_for_ready_worker(http, main_server)
    os.kill(pid, signal.SIGKILL)
    await wait_for_ready_worker(http, main_server, not_pid=pid)
    async with http.post(f"{main_server.inference}/predictions/slow", json={}) as response:
        assert response.status == 200


async def test_one_poison_request_fails_alone_in_a_batch_of_eight(
    main_server: Any, http: Any
) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    bodies: list[Any] = [[ROW]] * 7 + [{"poison": True}]
    answers = await asyncio.gather(*(post(http, url, body) for body in bodies))
    statuses = [status for status, _, _ in answers]
    assert statuses[:7] == [200] * 7
    assert statuses[7] >= 400
    assert answers[7][1]["message"]
