"""Turning a run into its headline: medians over rounds, marserve / TorchServe ratios, targets.

The printed tables are Markdown, so the same text goes into docs/benchmarks.md unchanged; the
JSON keeps every round's raw numbers next to the summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from marbench import peers, physical
from marbench.config import BenchConfig
from marbench.runner import PointResult, RunResults, ServerRun

MIB = 1024 * 1024
POINT_FIELDS = (
    "throughput",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "errors",
    "average_batch_size",
    "cpu_s_per_1k",
    "cpu_cores",
)
RUN_FIELDS = (
    "start_to_first_200_s",
    "idle_rss_bytes",
    "idle_pss_bytes",
    "peak_rss_bytes",
    "load_average",
)


WIRE_NOTES = {
    peers.Wire.RAW: "raw, as marserve: JSON floats, or PNG / JPEG bytes",
    peers.Wire.KSERVE_V1: '`{"instances": [...]}`; images as `{"b64": ...}`',
    peers.Wire.OPEN_INFERENCE_V2: "v2 JSON: FP32 tensor [1, 8]; images as BYTES of base64",
    peers.Wire.LITSERVE: '`{"input": ...}`: floats, or an image as base64 text',
}


@dataclass(frozen=True)
class Target:
    """One goal from the benchmark issue, checked against the medians."""

    name: str
    value: float | None
    limit: float
    higher_is_better: bool

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(results: RunResults) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> server -> medians of the run fields and, per concurrency, of the point fields."""
    grouped: dict[tuple[str, str], list[ServerRun]] = {}
    for run in results.runs:
        grouped.setdefault((run.model, run.server), []).append(run)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, server), runs in grouped.items():
        entry: dict[str, Any] = {
            key: _median(getattr(run, key) for run in runs) for key in RUN_FIELDS
        }
        by_concurrency: dict[int, list[PointResult]] = {}
        for run in runs:
            for point in run.points:
                by_concurrency.setdefault(point.concurrency, []).append(point)
        entry["points"] = {
            concurrency: {
                key: _median(getattr(point, key) for point in points) for key in POINT_FIELDS
            }
            for concurrency, points in sorted(by_concurrency.items())
        }
        entry["rounds"] = len(runs)
        summary.setdefault(model, {})[server] = entry
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(summary: dict[str, dict[str, dict[str, Any]]], model: str) -> list[Target]:
    """The issue's targets for one model (needs both servers, concurrency 1 and 64).

    Idle memory is judged two ways: a sum of RSS counts pages a fork server shares with its
    workers once per process, a sum of PSS counts them once, as a pod's memory limit does.
    """
    ours, theirs = summary[model].get("marserve"), summary[model].get("torchserve")
    if ours is None:
        return []

    def point(entry: dict[str, Any] | None, concurrency: int, key: str) -> float | None:
        if entry is None or concurrency not in entry["points"]:
            return None
        value = entry["points"][concurrency][key]
        return float(value) if value is not None else None

    def run_value(entry: dict[str, Any] | None, key: str) -> float | None:
        return None if entry is None else entry[key]

    return [
        Target(
            "throughput c=64, marserve / TorchServe",
            _ratio(point(ours, 64, "throughput"), point(theirs, 64, "throughput")),
            2.0,
            True,
        ),
        Target(
            "p99 c=64, marserve / TorchServe",
            _ratio(point(ours, 64, "p99_ms"), point(theirs, 64, "p99_ms")),
            0.5,
            False,
        ),
        Target("p50 c=1, marserve (ms)", point(ours, 1, "p50_ms"), 1.5, False),
        Target(
            "start to first 200, marserve / TorchServe",
            _ratio(
                run_value(ours, "start_to_first_200_s"), run_value(theirs, "start_to_first_200_s")
            ),
            0.5,
            False,
        ),
        Target(
            "idle RSS (sum over processes), marserve / TorchServe",
            _ratio(run_value(ours, "idle_rss_bytes"), run_value(theirs, "idle_rss_bytes")),
            0.7,
            False,
        ),
        Target(
            "idle PSS (shared pages counted once), marserve / TorchServe",
            _ratio(run_value(ours, "idle_pss_bytes"), run_value(theirs, "idle_pss_bytes")),
            0.7,
            False,
        ),
    ]


PEER_GOALS = (
    # (what, concurrency or None for a run field, key, goal, higher is better)
    ("throughput c=64", 64, "throughput", 1.5, True),
    ("p99 c=64", 64, "p99_ms", 0.7, False),
    ("p50 c=1", 1, "p50_ms", 1.0, False),
    ("start to first 200", None, "start_to_first_200_s", 1.0, False),
)


def peer_targets(summary: dict[str, dict[str, dict[str, Any]]], model: str) -> list[Target]:
    """marserve against the best other server on each measure, whichever server that is.

    The best is picked per measure (the fastest start may not be the fastest at c=64), so each
    target's name says which server it was.
    """
    entries = summary[model]
    ours = entries.get("marserve")
    others = {name: entry for name, entry in entries.items() if name != "marserve"}
    if ours is None or not others:
        return []

    def value(entry: dict[str, Any], concurrency: int | None, key: str) -> float | None:
        if concurrency is None:
            return entry[key]
        point = entry["points"].get(concurrency)
        return None if point is None or point[key] is None else float(point[key])

    found = []
    for what, concurrency, key, goal, higher_is_better in PEER_GOALS:
        measured = {
            name: v
            for name, entry in others.items()
            if (v := value(entry, concurrency, key)) is not None
        }
        if not measured:
            continue
        pick = max if higher_is_better else min
        best = pick(measured, key=lambda name: measured[name])
        ratio = _ratio(value(ours, concurrency, key), measured[best])
        found.append(
            Target(f"{what}, marserve / best other ({best})", ratio, goal, higher_is_better)
        )
    return found


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _load_rows(model: str, servers: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    concurrencies = sorted({c for entry in servers.values() for c in entry["points"]})
    columns: list[tuple[str, Callable[[float | None], str]]] = [
        ("throughput", lambda v: _fmt(v, ".0f")),
        ("p50_ms", _fmt),
        ("p90_ms", _fmt),
        ("p99_ms", _fmt),
        ("errors", lambda v: _fmt(v, ".0f")),
        ("average_batch_size", _fmt),
        ("cpu_s_per_1k", lambda v: _fmt(v, ".3f")),
        ("cpu_cores", _fmt),
    ]
    for concurrency in concurrencies:
        values = {name: entry["points"].get(concurrency) for name, entry in servers.items()}
        for name, point in values.items():
            rows.append(
                [model, str(concurrency), name]
                + [render(point[key] if point else None) for key, render in columns]
            )
        ours, theirs = values.get("marserve"), values.get("torchserve")
        if ours and theirs:
            rows.append(
                [model, str(concurrency), "**ratio**"]
                + [
                    _fmt(_ratio(ours[key], theirs[key])) if key != "errors" else "-"
                    for key, _ in columns
                ]
            )
    return rows


def render(results: RunResults, summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown tables: load points, start-up and memory, physical limit, targets."""
    lines: list[str] = []
    for model, servers in summary.items():
        # One table per workload: every server side by side, ratios against TorchServe.
        lines += [f"### Load, {model} (medians over rounds)", ""]
        lines += _table(
            [
                "model",
                "c",
                "server",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "errors",
                "avg batch",
                "CPU s / 1k req",
                "CPU cores busy",
            ],
            _load_rows(model, servers),
        )
        lines.append("")
    lines += ["### Start-up and memory (medians over rounds)", ""]
    memory_rows = []
    for model, servers in summary.items():
        for name, entry in servers.items():
            memory_rows.append(
                [
                    model,
                    name,
                    _fmt(entry["start_to_first_200_s"]),
                    _fmt(entry["idle_rss_bytes"] / MIB, ".0f"),
                    _fmt(entry["idle_pss_bytes"] / MIB, ".0f"),
                    _fmt(entry["peak_rss_bytes"] / MIB, ".0f"),
                    _fmt(entry["load_average"], ".1f"),
                ]
            )
    lines += _table(
        [
            "model",
            "server",
            "start to first 200 s",
            "idle RSS MiB",
            "idle PSS MiB",
            "peak RSS MiB",
            "load avg",
        ],
        memory_rows,
    )
    lines += [
        "",
        f"A fresh `import torch` takes {_fmt(results.torch_import_s)} s here (median of "
        f"{physical.TORCH_IMPORT_REPEATS}): both "
        "servers import torch before their first answer, so no start to first 200 is shorter.",
    ]
    lines += ["", "### Physical limit and serving overhead", ""]
    physical_rows = []
    for model, limit in results.physical.items():
        overheads = []
        for name in ("marserve", "torchserve"):
            served = summary.get(model, {}).get(name)
            p50 = served["points"].get(1, {}).get("p50_ms") if served else None
            overheads.append(_fmt(p50 - limit.forward_us[1] / 1000 if p50 is not None else None))
        physical_rows.append(
            [
                model,
                _fmt(limit.forward_us[1], ".1f"),
                _fmt(limit.forward_us[8], ".1f"),
                _fmt(limit.handler_us[1], ".1f"),
                _fmt(limit.handler_us[8], ".1f"),
                *overheads,
            ]
        )
    lines += _table(
        [
            "model",
            "forward b=1 µs",
            "forward b=8 µs",
            "marserve handler b=1 µs",
            "handler b=8 µs",
            "marserve overhead c=1 ms",
            "TorchServe overhead c=1 ms",
        ],
        physical_rows,
    )
    lines += ["", "### Targets", ""]
    target_rows = [
        [
            model,
            target.name,
            _fmt(target.value),
            f"{'≥' if target.higher_is_better else '≤'} {target.limit}",
            {True: "yes", False: "**no**", None: "-"}[target.met],
        ]
        for model in summary
        for target in targets(summary, model)
    ]
    lines += _table(["model", "target", "value", "goal", "met"], target_rows)
    lines += _peer_sections(summary)
    return "\n".join(lines) + "\n"


def _met(target: Target) -> str:
    return {True: "yes", False: "**no**", None: "-"}[target.met]


def _peer_sections(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """How each peer in the run was reached, and marserve against the best other server."""
    present = [name for name in peers.PEERS if any(name in entry for entry in summary.values())]
    if not present:
        return []
    lines = ["", "### Peers: endpoint, request format and batching", ""]
    lines += _table(
        ["server", "endpoint", "request body", "batching"],
        [
            [name, f"`{peers.PEERS[name].path}`", WIRE_NOTES[peers.PEERS[name].wire],
             peers.PEERS[name].batching]
            for name in present
        ],
    )  # fmt: skip
    lines += ["", "### Against the best other server (medians over rounds)", ""]
    rows = [
        [model, target.name, _fmt(target.value),
         f"{'≥' if target.higher_is_better else '≤'} {target.limit}", _met(target)]
        for model in summary
        for target in peer_targets(summary, model)
    ]  # fmt: skip
    return lines + _table(["model", "target", "value", "goal", "met"], rows)


def _command_output(*command: str) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return (completed.stdout or completed.stderr).strip()


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, memory, kernel and the software versions."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "load_average_at_end": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "aiohttp": version("aiohttp"),
        "marserve_commit": _command_output("git", "rev-parse", "--short", "HEAD"),
        "grpcio": version("grpcio"),
        # Empty where the tool is missing (a run of only marserve-grpc needs no wrk).
        "wrk": next(iter(_command_output("wrk", "--version").splitlines()), ""),
        "java": next(iter(_command_output("java", "-version").splitlines()), ""),
    }


def write_json(
    path: Path,
    *,
    config: BenchConfig,
    results: RunResults,
    summary: dict[str, dict[str, dict[str, Any]]],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine(),
        "config": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in dataclasses.asdict(config).items()
        },
        "physical": {name: dataclasses.asdict(limit) for name, limit in results.physical.items()},
        "torch_import_s": results.torch_import_s,
        "summary": summary,
        "targets": {
            model: [
                dict(dataclasses.asdict(target), met=target.met)
                for target in targets(summary, model)
            ]
            for model in summary
        },
        "peer_targets": {
            model: [
                dict(dataclasses.asdict(target), met=target.met)
                for target in peer_targets(summary, model)
            ]
            for model in summary
        },
        "runs": [dataclasses.asdict(run) for run in results.runs],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
