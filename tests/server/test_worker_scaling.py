"""Workers between minWorkers and maxWorkers: the policy alone, then a real server under load."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marserve.server.states import WorkerState
from marserve.server.worker_scaling import Scaling, ScalingPolicy

READY, BUSY, STARTING = WorkerState.READY, WorkerState.BUSY, WorkerState.STARTING


def policy(*, min_workers: int = 1, max_workers: int = 3) -> ScalingPolicy:
    return ScalingPolicy(
        min_workers=min_workers,
        max_workers=max_workers,
        idle_after_s=10.0,
        now=0.0,
        scale_up_after_s=0.5,
    )


def test_a_worker_is_added_only_once_requests_have_waited_on_busy_workers_long_enough() -> None:
    scaling = policy()
    assert scaling.decide(now=1.0, queued=3, states=[BUSY]) is Scaling.KEEP
    assert scaling.decide(now=1.4, queued=3, states=[BUSY]) is Scaling.KEEP
    assert scaling.decide(now=1.5, queued=3, states=[BUSY]) is Scaling.ADD
    assert scaling.decide(now=1.6, queued=3, states=[BUSY, STARTING]) is Scaling.KEEP


def test_a_short_burst_or_an_idle_worker_adds_nothing() -> None:
    scaling = policy()
    assert scaling.decide(now=1.0, queued=3, states=[BUSY]) is Scaling.KEEP
    assert scaling.decide(now=1.2, queued=0, states=[BUSY]) is Scaling.KEEP  # the queue drained
    assert scaling.decide(now=1.6, queued=3, states=[BUSY]) is Scaling.KEEP  # a new wait begins
    assert scaling.decide(now=5.0, queued=3, states=[BUSY, READY]) is Scaling.KEEP


def test_never_more_than_max_workers() -> None:
    scaling = policy(max_workers=2)
    for now in (1.0, 2.0, 3.0):
        assert scaling.decide(now=now, queued=5, states=[BUSY, BUSY]) is Scaling.KEEP


def test_a_spare_worker_is_retired_after_the_idle_time_but_never_below_min_workers() -> None:
    scaling = policy(min_workers=1)
    assert scaling.decide(now=1.0, queued=0, states=[BUSY, BUSY]) is Scaling.KEEP
    assert scaling.decide(now=10.9, queued=0, states=[BUSY, READY]) is Scaling.KEEP
    assert scaling.decide(now=11.0, queued=0, states=[BUSY, READY]) is Scaling.RETIRE
    assert scaling.decide(now=12.0, queued=0, states=[READY, READY]) is Scaling.KEEP
    assert scaling.decide(now=60.0, queued=0, states=[READY]) is Scaling.KEEP


@pytest.fixture(scope="module")
def scaling_server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    """One worker at rest, two under load; a spare worker goes after 1 s of idling."""
    model = server_kit.scripted_model_dir(
        own_tmp / "elastic",
        name="elastic",
        yaml_config={"minWorkers": 1, "maxWorkers": 2, "batchSize": 1, "maxBatchDelay": 0},
    )
    server = server_kit.start_server(
        own_tmp, model_args=[f"elastic={model}"], env={"MARSERVE_WORKER_IDLE_SECONDS": "1"}
    )
    yield server
    server_kit.stop_server(server)


async def describe(session: aiohttp.ClientSession, server: Any) -> dict[str, Any]:
    async with session.get(f"{server.management}/models/elastic") as response:
        (described,) = await response.json()
    result: dict[str, Any] = described
    return result


async def live_workers_gauge(session: aiohttp.ClientSession, server: Any) -> float:
    async with session.get(f"{server.metrics}/metrics?name[]=marserve_workers") as response:
        text = await response.text()
    (line,) = [line for line in text.splitlines() if line.startswith("marserve_workers{")]
    return float(line.rsplit(" ", 1)[1])


async def test_sustained_load_starts_a_second_worker_and_idling_retires_it(
    scaling_server: Any,
) -> None:
    url = f"{scaling_server.inference}/predictions/elastic"
    async with aiohttp.ClientSession() as session:
        described = await describe(session, scaling_server)
        assert (described["minWorkers"], described["maxWorkers"]) == (1, 2)
        assert len(described["workers"]) == 1

        async def slow_request() -> int:
            async with session.post(url, json={"sleep": 0.4}) as response:
                assert response.status == 200
                answer = await response.json()
                pid: int = answer["pid"]
                return pid

        pids = await asyncio.gather(*(slow_request() for _ in range(16)))
        assert len(set(pids)) == 2, scaling_server.log()  # both workers answered
        assert "starting worker elastic-1" in scaling_server.log()

        for _ in range(200):  # the spare worker goes about 1 s after the load ends
            described = await describe(session, scaling_server)
            if len(described["workers"]) == 1:
                break
            await asyncio.sleep(0.1)
        assert [w["state"] for w in described["workers"]] == ["READY"], scaling_server.log()
        assert await live_workers_gauge(session, scaling_server) == 1
        assert "retired after idling" in scaling_server.log()
