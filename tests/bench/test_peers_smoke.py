"""Each peer's harness still serves: it starts on the MLP and answers what marserve answers.

A peer is checked only where `make bench` installed its venv (`.venv-<peer>/.installed`), so a
fresh machine skips these and `make test` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from marbench import artifacts, peers, servers
from marbench.config import BenchConfig, ModelYaml

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 5


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="module")
def config(work_dir: Path) -> BenchConfig:
    return BenchConfig(
        servers=("marserve", *peers.PEERS), models=("mlp_ts",), concurrencies=(1,), rounds=1,
        duration_s=1, warmup_s=0, server_warmup_s=0, max_requests=REQUESTS, work_dir=work_dir,
        results_dir=work_dir, marserve_bin=Path(sys.executable).with_name("marserve"),
        torchserve_venv=REPO / ".venv-torchserve", model_yaml=ModelYaml(), physical_iterations=0,
        peer_venv_dir=REPO,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(config: BenchConfig) -> artifacts.BenchModel:
    return artifacts.build("mlp_ts", work_dir=config.work_dir, model_yaml=config.model_yaml)


def answers(name: str, *, model: artifacts.BenchModel, config: BenchConfig) -> Iterator[bytes]:
    """Starts server `name`, yields its answers to a few requests, and stops it."""
    server = servers.start(name, model=model, config=config, run_dir=config.work_dir / name)
    try:
        servers.wait_first_200(server, model=model, timeout_s=config.start_timeout_s)
        body = server.endpoint.body_file.read_bytes()
        for _ in range(REQUESTS):
            status, answer = server.request(
                "POST", server.endpoint.path, port=server.ports.inference, body=body,
                content_type=server.endpoint.content_type,
            )  # fmt: skip
            assert status == 200, answer
            yield answer
    finally:
        server.stop()


@pytest.fixture(scope="module")
def marserve_answer(model: artifacts.BenchModel, config: BenchConfig) -> list[float]:
    first, *rest = answers("marserve", model=model, config=config)
    assert all(answer == first for answer in rest)
    return peers.parse_answer(peers.Wire.RAW, first)


@pytest.mark.parametrize("name", list(peers.PEERS))
def test_peer_answers_the_mlp_as_marserve_does(
    name: str, model: artifacts.BenchModel, config: BenchConfig, marserve_answer: list[float]
) -> None:
    peer = peers.PEERS[name]
    if not (REPO / peer.venv / ".installed").exists():
        pytest.skip(f"{peer.venv} is not installed (make bench-peers installs it)")

    got = [
        peers.parse_answer(peer.wire, answer)
        for answer in answers(name, model=model, config=config)
    ]

    assert len(got) == REQUESTS
    for row in got:
        assert row == pytest.approx(marserve_answer, abs=1e-5)
    counters = (config.work_dir / name / "batch-counters").read_bytes()
    requests, batches = (
        int.from_bytes(counters[:8], "little"),
        int.from_bytes(counters[8:], "little"),
    )
    # Every request reached the model through the harness's counted path, one at a time.
    assert requests == batches >= REQUESTS + 1
