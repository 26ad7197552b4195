"""Default torch intra-op threads per worker: a share of the usable CPUs, the user's env wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from marserve.loading import cpu
from marserve.server import cpu_threads as threads


@pytest.mark.parametrize(
    ("cpus", "workers", "expected"),
    [(1, 1, 1), (2, 1, 1), (2, 4, 1), (16, 1, 15), (16, 3, 5), (64, 8, 7)],
)
def test_each_worker_gets_a_share_of_the_cpus_left_by_the_front_end(
    cpus: int, workers: int, expected: int
) -> None:
    assert threads.intra_op_threads(workers=workers, cpus=cpus, environ={}) == expected


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_set_by_the_user_is_left_to_torch(name: str) -> None:
    assert threads.intra_op_threads(workers=1, cpus=16, environ={name: "4"}) is None


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
    assert threads.intra_op_threads(workers=1, cpus=cpu.available_cpus(), environ={}) == 2
