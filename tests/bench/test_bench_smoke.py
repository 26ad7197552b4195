"""The bench end to end for about a second per point, so `make bench` keeps working.

No numbers are judged here (speed lives in bench/ and docs/benchmarks.md); these check that
every server and model still runs through the bench and that what it reports is consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TORCHSERVE_VENV = REPO / ".venv-torchserve"

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)"
)
needs_torchserve = pytest.mark.skipif(
    not (TORCHSERVE_VENV / ".installed").exists(),
    reason="TorchServe is not installed (make bench installs it into .venv-torchserve)",
)


def run_bench(results_dir: Path, *args: str) -> tuple[str, dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'bench'}{os.pathsep}{REPO / 'tests'}")
    completed = subprocess.run(
        [sys.executable, "-m", "marbench", "--concurrency", "1,4", "--rounds", "1",
         "--duration", "1", "--warmup", "0", "--server-warmup", "1", "--physical-iterations", "20",
         "--results-dir", str(results_dir), "--torchserve-venv", str(TORCHSERVE_VENV), *args],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, json.loads((results_dir / "latest.json").read_text())


def check_server(document: dict[str, Any], *, model: str, server: str) -> None:
    entry = document["summary"][model][server]
    assert entry["start_to_first_200_s"] > 0
    assert entry["peak_rss_bytes"] >= entry["idle_rss_bytes"] > 10 * 1024 * 1024
    assert entry["idle_rss_bytes"] >= entry["idle_pss_bytes"] > 10 * 1024 * 1024
    alone, crowd = entry["points"]["1"], entry["points"]["4"]
    for point in (alone, crowd):
        assert point["errors"] == 0
        assert point["throughput"] > 0
        assert 0 < point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"]
        assert point["cpu_s_per_1k"] > 0
    # One connection can never form a batch larger than one; four may, never more than four.
    assert alone["average_batch_size"] == 1.0
    assert 1.0 <= crowd["average_batch_size"] <= 4.0


@needs_wrk
def test_bench_runs_marserve_on_the_image_model(tmp_path: Path) -> None:
    table, document = run_bench(tmp_path, "--servers", "marserve", "--models", "cnn")

    check_server(document, model="cnn", server="marserve")
    limit = document["physical"]["cnn"]
    assert set(limit["forward_us"]) == set(limit["handler_us"]) == {"1", "8"}
    assert 0 < document["torch_import_s"] < 60
    assert f"A fresh `import torch` takes {document['torch_import_s']:.2f} s" in table
    assert "| cnn | 1 | marserve |" in table
    assert (tmp_path / "latest.md").read_text() in table
    assert "| cnn | 1 | **ratio** |" not in table
    assert document["machine"]["cores"] == os.cpu_count()
    assert [run["server"] for run in document["runs"]] == ["marserve"]


@needs_wrk
@needs_torchserve
def test_bench_runs_torchserve_and_marserve_side_by_side(tmp_path: Path) -> None:
    table, document = run_bench(tmp_path, "--models", "mlp_eager")

    servers = ("marserve", "marserve-grpc", "marserve-v2-binary", "marserve-oip-grpc", "torchserve")
    for server in servers:
        check_server(document, model="mlp_eager", server=server)
    assert [run["server"] for run in document["runs"]] == list(servers)
    assert "| mlp_eager | 4 | **ratio** |" in table
    assert [target["met"] is not None for target in document["targets"]["mlp_eager"]] == [
        False, False, True, True, True, True  # no concurrency 64 here: those two have no value
    ]  # fmt: skip


def test_bench_drives_marserve_over_grpc(tmp_path: Path) -> None:
    """The gRPC path needs no wrk: its load comes from grpc.aio clients."""
    table, document = run_bench(tmp_path, "--servers", "marserve-grpc", "--models", "mlp_eager")

    check_server(document, model="mlp_eager", server="marserve-grpc")
    assert "| mlp_eager | 4 | marserve-grpc |" in table
    assert [run["server"] for run in document["runs"]] == ["marserve-grpc"]


@needs_wrk
def test_bench_drives_marserve_through_the_open_inference_protocol(tmp_path: Path) -> None:
    """v2 with binary tensors (wrk) and gRPC ModelInfer on the MLP; the image model, whose body
    is no tensor, is skipped on those paths and served on HTTP."""
    table, document = run_bench(
        tmp_path, "--servers", "marserve-v2-binary,marserve-oip-grpc,marserve",
        "--models", "mlp_eager,cnn",
    )  # fmt: skip

    for server in ("marserve-v2-binary", "marserve-oip-grpc"):
        check_server(document, model="mlp_eager", server=server)
        assert f"| mlp_eager | 4 | {server} |" in table
    assert [(run["model"], run["server"]) for run in document["runs"]] == [
        ("mlp_eager", "marserve-v2-binary"), ("mlp_eager", "marserve-oip-grpc"),
        ("mlp_eager", "marserve"), ("cnn", "marserve"),
    ]  # fmt: skip
