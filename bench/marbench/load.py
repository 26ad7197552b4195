"""The load generator: wrk in its own process, one fixed POST body, bounded by time and count.

wrk (C, one thread) costs far less CPU per request than any Python client, which matters on a
2-core machine where the generator shares the cores with the server it measures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post_body.lua")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: counts, wall time and latency percentiles (milliseconds)."""

    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    capped: bool
    error_statuses: dict[str, int]

    @property
    def throughput(self) -> float:
        """Successful answers per second: fast refusals (429, 503) must not look like speed."""
        return (self.requests - self.errors) / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    return found


def run(
    url: str,
    *,
    body_file: Path,
    content_type: str,
    concurrency: int,
    duration_s: int,
    max_requests: int,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Drives `url` with `concurrency` keep-alive connections for `duration_s` whole seconds,
    sending `headers` besides the content type.

    `max_requests` is a safety bound: a run that reaches it reports `capped`, because wrk then
    still counts the full duration and its throughput reads low.
    """
    command = [
        wrk_path(),
        "--threads", "1",
        "--connections", str(concurrency),
        "--duration", f"{duration_s}s",
        "--timeout", "10s",
        "--script", str(SCRIPT),
        url,
        "--", str(body_file), content_type, str(max_requests),
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    summary_line = next(
        (line for line in completed.stdout.splitlines() if line.startswith("{")), None
    )
    if completed.returncode != 0 or summary_line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    summary = json.loads(summary_line)
    errors = summary["non_ok"] + sum(
        summary[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return LoadResult(
        requests=summary["requests"],
        errors=errors,
        duration_s=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1e3,
        p90_ms=summary["p90_us"] / 1e3,
        p99_ms=summary["p99_us"] / 1e3,
        max_ms=summary["max_us"] / 1e3,
        capped=summary["requests"] >= max_requests,
        error_statuses=summary["statuses"],
    )
