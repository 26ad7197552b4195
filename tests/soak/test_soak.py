"""Soak: marserve under steady load for ten minutes must neither leak memory nor fail a request.

Runs only with `make soak` (`pytest -m soak`). MARSERVE_SOAK_SECONDS shortens it for a try-out.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from marbench import artifacts, load, servers
from marbench.config import BenchConfig, ModelYaml

DURATION_S = int(os.environ.get("MARSERVE_SOAK_SECONDS", "600"))
CONCURRENCY = 32
SAMPLE_EVERY_S = 10.0
WARMUP_S = min(60.0, DURATION_S / 5)
ALLOWED_GROWTH = 1.10


def soak_config(work_dir: Path) -> BenchConfig:
    return BenchConfig(
        servers=("marserve",), models=("mlp_eager",), concurrencies=(CONCURRENCY,), rounds=1,
        duration_s=DURATION_S, warmup_s=0, server_warmup_s=0, max_requests=10**9,
        work_dir=work_dir, results_dir=work_dir,
        marserve_bin=Path(sys.executable).with_name("marserve"), torchserve_venv=work_dir,
        model_yaml=ModelYaml(), physical_iterations=0,
    )  # fmt: skip


@pytest.mark.soak
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench)")
def test_marserve_keeps_its_memory_and_answers_every_request_under_steady_load(
    tmp_path: Path,
) -> None:
    config = soak_config(tmp_path)
    model = artifacts.build("mlp_eager", work_dir=tmp_path, model_yaml=config.model_yaml)
    server = servers.start("marserve", model=model, config=config, run_dir=tmp_path / "run")
    try:
        servers.wait_first_200(server, model=model, timeout_s=config.start_timeout_s)
        outcome: list[load.LoadResult] = []
        url = f"http://127.0.0.1:{server.ports.inference}/predictions/{model.name}"
        driver = threading.Thread(target=lambda: outcome.append(load.run(
            url, body_file=model.body_file, content_type=model.content_type,
            concurrency=CONCURRENCY, duration_s=DURATION_S, max_requests=config.max_requests,
        )))  # fmt: skip
        driver.start()
        samples: list[tuple[float, int]] = []
        elapsed = 0.0
        while driver.is_alive():
            driver.join(SAMPLE_EVERY_S)
            elapsed += SAMPLE_EVERY_S
            samples.append((elapsed, server.stats().rss_bytes))
    finally:
        server.stop()

    [result] = outcome
    assert result.requests > 0
    assert result.errors == 0, f"{result.errors} of {result.requests} requests failed"
    # The first sample at the end of warm-up is the baseline; every later one is held to it.
    settled = [rss for at, rss in samples if at >= WARMUP_S]
    assert len(settled) >= 2, "the run was too short to sample after warm-up"
    growth = max(settled[1:]) / settled[0]
    assert growth <= ALLOWED_GROWTH, f"RSS grew {growth:.1%} after warm-up: {samples}"
