"""CPU time and memory of a whole process tree, read from /proc.

A server is every process under its root: marserve's front end and its workers, TorchServe's JVM
and its Python workers. CPU includes children already reaped (cutime/cstime), so short-lived
helpers such as TorchServe's system-metrics collector are counted too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TreeSample:
    """One reading of a process tree."""

    pids: tuple[int, ...]
    cpu_seconds: float
    rss_bytes: int
    pss_bytes: int
    peak_rss_bytes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_pids(root: int) -> tuple[int, ...]:
    """The root and all its descendants that are alive now."""
    children = _children_by_parent()
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return tuple(found)


def _memory_bytes(pid: int) -> tuple[int, int]:
    """Resident set size now and its high-water mark (VmRSS, VmHWM) of one process."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return 0, 0
    for line in lines:
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def _pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that map them.

    A sum of RSS counts a page shared by a fork server and its forked workers once per process;
    a sum of PSS counts it once, as the kernel (and a pod's memory limit) does.
    """
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        key, _, rest = line.partition(":")
        if key == "Pss":
            return int(rest.split()[0]) * 1024
    return 0


def sample(root: int, *, with_pss: bool = False) -> TreeSample:
    """CPU seconds, RSS, peak RSS and (on request) PSS summed over the tree.

    Peaks are per-process lifetimes. PSS walks every mapping of every process, so it is read
    only when asked for, never at the edges of a measured load run.
    """
    pids = tree_pids(root)
    ticks = rss = pss = peak = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 of stat (index 11-14 after the name).
            ticks += sum(int(value) for value in fields[11:15])
        now, high = _memory_bytes(pid)
        rss += now
        pss += _pss_bytes(pid) if with_pss else 0
        peak += high
    return TreeSample(
        pids=pids,
        cpu_seconds=ticks / CLOCK_TICKS,
        rss_bytes=rss,
        pss_bytes=pss,
        peak_rss_bytes=peak,
    )


def process_cpu_seconds(pid: int) -> float:
    """CPU time of one process alone (utime + stime), 0 when it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def find_descendant(root: int, *, name: str) -> int | None:
    """The first descendant whose command name is `name` (TorchServe's JVM under its launcher)."""
    for pid in tree_pids(root):
        try:
            if (PROC / str(pid) / "comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
    return None
