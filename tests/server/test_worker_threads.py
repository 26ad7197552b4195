"""Default torch intra-op threads per worker: a share of the usable CPUs, the user's env wins."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_a_cgroup_quota_caps_the_usable_cpus(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    visible = threads.usable_cpus(cpu_max=tmp_path / "missing")

    cpu_max.write_text("max 100000\n")
    assert threads.usable_cpus(cpu_max=cpu_max) == visible
    cpu_max.write_text("50000 100000\n")
    assert threads.usable_cpus(cpu_max=cpu_max) == 1
    cpu_max.write_text(f"{(visible + 8) * 100000} 100000\n")
    assert threads.usable_cpus(cpu_max=cpu_max) == visible
