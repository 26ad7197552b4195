"""How many CPUs this process may really use: the container's CPU limit, not the host's cores.

A pod limited to 2 CPUs on a 64-core node that starts 64 threads per session spends its quota
in a fraction of each period and is throttled; sizing thread pools to the limit avoids that.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def available_cpus() -> int:
    """The cgroup CPU limit rounded up (v2 `cpu.max`, then v1 CFS quota), else the CPU count."""
    host = _host_cpus()
    limit = _v2_limit(CGROUP_V2_CPU_MAX)
    if limit is None:
        limit = _v1_limit(CGROUP_V1_QUOTA, CGROUP_V1_PERIOD)
    if limit is None:
        return host
    return max(1, min(host, math.ceil(limit)))


def _host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _v2_limit(cpu_max: Path) -> float | None:
    fields = _read(cpu_max).split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(quota: Path, period: Path) -> float | None:
    quota_text = _read(quota).strip()
    if not quota_text or quota_text.startswith("-"):
        return None
    return _ratio(quota_text, _read(period).strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
