"""Archives from `marserve archive` load and answer in the real TorchServe 0.12.

Needs the TorchServe venv that `make bench` installs (`.venv-torchserve`, Java 17); skipped
without it. A soak test: TorchServe takes tens of seconds to start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from support import models

TORCHSERVE = Path(__file__).resolve().parents[2] / ".venv-torchserve" / "bin" / "torchserve"
START_BUDGET_S = 180

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not TORCHSERVE.exists(), reason="no .venv-torchserve (make bench)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def model_store(archive_flags: list[str], marserve: Callable[..., Any], tmp_path: Path) -> Path:
    """One store, two archives of the same model: `zipped.mar` and `tarred.tar.gz`."""
    store = tmp_path / "store"
    for name, archive_format in (("zipped", "default"), ("tarred", "tgz")):
        built = marserve(
            "archive", *archive_flags, "--model-name", name, "--export-path", store,
            "--archive-format", archive_format,
        )  # fmt: skip
        assert built.code == 0
    return store


@pytest.fixture
def torchserve(model_store: Path, tmp_path: Path) -> Iterator[str]:
    """TorchServe serving both archives; stopped by its own process group, never `--stop`."""
    port = _free_port()
    config = tmp_path / "config.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{_free_port()}\n"
        f"metrics_address=http://127.0.0.1:{_free_port()}\n"
        "disable_token_authorization=true\n"
    )
    (tmp_path / "ts-tmp").mkdir()
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path / "ts-tmp")  # its pid file, apart from any other TorchServe
    env["JAVA_TOOL_OPTIONS"] = f"-Djava.io.tmpdir={tmp_path / 'ts-tmp'}"  # unpacked models
    process = subprocess.Popen(
        [
            str(TORCHSERVE), "--start", "--foreground", "--ncs", "--disable-token-auth",
            "--model-store", str(model_store), "--ts-config", str(config),
            "--models", "zipped=zipped.mar", "tarred=tarred.tar.gz",
        ],
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _predict(url: str, row: list[float]) -> list[float] | None:
    request = urllib.request.Request(
        url, data=json.dumps(row).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: list[float] = json.loads(response.read())
            return answer
    except OSError:
        return None


def test_torchserve_serves_our_archives(torchserve: str) -> None:
    row = [i / 10 for i in range(8)]
    with torch.no_grad():
        expected = models.make_mlp()(torch.tensor([row])).squeeze(0)
    for model in ("zipped", "tarred"):
        deadline = time.monotonic() + START_BUDGET_S
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = _predict(f"{torchserve}/predictions/{model}", row)
            if answer is None:
                time.sleep(1)
        assert answer is not None, f"TorchServe never answered for {model}"
        torch.testing.assert_close(torch.tensor(answer), expected)
