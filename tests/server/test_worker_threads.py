"""Default torch intra-op threads per worker: a share of the usable CPUs, with or without the
front end's core as the worker's batch times say; the user's env wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marserve.loading import cpu
from marserve.server import cpu_threads as threads


@pytest.mark.parametrize(
    ("cpus", "workers", "light", "heavy"),
    [(1, 1, 1, 1), (2, 1, 1, 2), (2, 4, 1, 1), (16, 1, 15, 16), (16, 3, 5, 5), (64, 8, 7, 8)],
)
def test_each_worker_gets_a_share_of_the_cpus_with_or_without_the_front_ends(
    cpus: int, workers: int, light: int, heavy: int
) -> None:
    plan = threads.thread_plan(workers=workers, cpus=cpus, environ={})
    assert plan == threads.ThreadPlan(light=light, heavy=heavy)


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_set_by_the_user_is_left_to_torch(name: str) -> None:
    assert threads.thread_plan(workers=1, cpus=16, environ={name: "4"}) is None


def test_long_batches_take_the_front_ends_core_and_short_ones_give_it_back() -> None:
    calls: list[int] = []
    governor = threads.ThreadGovernor(threads.ThreadPlan(light=1, heavy=2), calls.append)
    assert (governor.threads, calls) == (1, [1])
    for _ in range(20):
        governor.batch_took(0.002)  # a small model: the front end keeps its core
    assert calls == [1]
    governor.batch_took(0.3)  # one ResNet-sized batch moves the average past LONG_BATCH_S
    assert (governor.threads, calls) == (2, [1, 2])
    governor.batch_took(threads.LONG_BATCH_S * 0.75)  # between the two marks: no change
    assert calls == [1, 2]
    for _ in range(20):
        governor.batch_took(0.001)
    assert (governor.threads, calls) == (1, [1, 2, 1])


def test_a_worker_starts_with_the_light_share_whatever_its_first_batch() -> None:
    calls: list[int] = []
    governor = threads.ThreadGovernor(threads.ThreadPlan(light=3, heavy=4), calls.append)
    governor.batch_took(1.0)
    assert calls == [3, 4]


def test_a_cgroup_quota_v2_or_v1_caps_the_cpus_shared_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpu_max, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda _pid: set(range(16)))
    monkeypatch.setattr(cpu, "CGROUP_V2_CPU_MAX", cpu_max)
    monkeypatch.setattr(cpu, "CGROUP_V1_QUOTA", quota)
    monkeypatch.setattr(cpu, "CGROUP_V1_PERIOD", period)
    assert cpu.available_cpus() == 16
    cpu_max.write_text("max 100000\n")
    assert cpu.available_cpus() == 16
    cpu_max.write_text("50000 100000\n")
    assert cpu.available_cpus() == 1
    cpu_max.write_text(f"{24 * 100000} 100000\n")
    assert cpu.available_cpus() == 16
    cpu_max.unlink()
    quota.write_text("300000\n")
    period.write_text("100000\n")
    plan = threads.thread_plan(workers=1, cpus=cpu.available_cpus(), environ={})
    assert plan == threads.ThreadPlan(light=2, heavy=3)


async def test_a_worker_with_long_batches_takes_the_front_ends_core(
    main_server: Any, auth: dict[str, str]
) -> None:
    """The `slow` model's one worker on this machine's CPUs: light share while its batches are
    quick, the whole share after batches of 50 ms."""
    plan = threads.thread_plan(workers=1, cpus=cpu.available_cpus(), environ={})
    assert plan is not None
    url = f"{main_server.inference}/predictions/slow"
    async with aiohttp.ClientSession(headers=auth) as http:

        async def threads_after(body: dict[str, float], times: int) -> int:
            for _ in range(times):
                async with http.post(url, json=body) as response:
                    assert response.status == 200
            async with http.post(url, json={"probe": 1}) as response:
                return int((await response.json())["torch_threads"])

        assert await threads_after({"sleep": 0.0}, 10) == plan.light
        assert await threads_after({"sleep": 0.05}, 5) == plan.heavy
        assert await threads_after({"sleep": 0.0}, 20) == plan.light
