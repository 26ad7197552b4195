"""Archives for the differential tests, made by the real `torch-model-archiver` from tiny models.

`echo` answers what its handler was given (inputs, their types, the headers TorchServe adds), so
any difference in how a request reaches a handler shows in the body; `mlp` is TorchServe's
`base_handler` on a seeded MLP; `raiser` fails every request; `batched` is `echo` with
`batchSize` 4.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from compat import side_by_side
from support import models

ECHO_HANDLER = '''
"""Answers, for each request of the batch, what the handler was given."""
import base64


def describe(value):
    if isinstance(value, (bytes, bytearray)):
        try:
            return {"text": bytes(value).decode()}
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(bytes(value)).decode()}
    return {type(value).__name__: value}


def handle(data, context):
    if data is None:
        return None
    return [
        {
            "inputs": {key: describe(value) for key, value in sorted(row.items())},
            "explain": context.get_request_header(index, "explain"),
            "content_type": context.get_request_header(index, "Content-Type"),
        }
        for index, row in enumerate(data)
    ]
'''

RAISING_HANDLER = '''
"""Fails every request: with the status a `{"code": N}` body asks for, as a handler that
refuses an input does, or with a bug otherwise."""
from ts.utils.util import PredictionException


def handle(data, context):
    if data is None:
        return None
    body = data[0].get("body")
    if isinstance(body, dict) and "code" in body:
        raise PredictionException("the input was refused", body["code"])
    raise ValueError("this handler always fails")
'''

BATCH_CONFIG = "batchSize: 4\nmaxBatchDelay: 300\nminWorkers: 1\nmaxWorkers: 1\n"
ONE_WORKER = "minWorkers: 1\nmaxWorkers: 1\n"
MODELS = ("echo", "mlp", "raiser", "batched")


@dataclass(frozen=True)
class Store:
    """The `.mar` files TorchServe serves, all in one model store."""

    path: Path

    def mar(self, name: str) -> Path:
        return self.path / f"{name}.mar"


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    if not side_by_side.ARCHIVER.exists():
        pytest.skip("no .venv-torchserve (make compat creates it)")
    sources = tmp_path_factory.mktemp("sources")
    path = tmp_path_factory.mktemp("store")
    model_file, weights = models.write_eager(models.make_mlp(seed=7), sources / "mlp")
    one_worker = models.write_text(sources / "one-worker.yaml", ONE_WORKER)
    side_by_side.archive(
        name="mlp", handler="base_handler", store=path, model_file=model_file,
        serialized_file=weights, config_file=one_worker,
    )  # fmt: skip
    echo = models.write_text(sources / "echo_handler.py", ECHO_HANDLER)
    side_by_side.archive(name="echo", handler=str(echo), store=path, config_file=one_worker)
    raiser = models.write_text(sources / "raising_handler.py", RAISING_HANDLER)
    side_by_side.archive(name="raiser", handler=str(raiser), store=path, config_file=one_worker)
    batch = models.write_text(sources / "batch.yaml", BATCH_CONFIG)
    side_by_side.archive(name="batched", handler=str(echo), store=path, config_file=batch)
    return Store(path)


@pytest.fixture(scope="session")
def mlp_weights_model() -> torch.nn.Module:
    """The model inside `mlp.mar`, to compute what both servers should answer."""
    return models.make_mlp(seed=7)


def serve_pair(
    store: Store, *, names: Sequence[str], envelope: str | None, run_dir: Path
) -> Iterator[side_by_side.Pair]:
    """Both servers on the same archives with the same envelope, for one test module."""
    unpacked = {
        name: side_by_side.with_envelope(
            store.mar(name), envelope=envelope, destination=run_dir / "marserve-models" / name
        )
        for name in names
    }
    with (
        side_by_side.torchserve(
            store.path, models=names, envelope=envelope, run_dir=run_dir / "torchserve"
        ) as torchserve_url,
        side_by_side.marserve(unpacked, run_dir=run_dir / "marserve") as server,
    ):
        yield side_by_side.Pair(torchserve=torchserve_url, marserve=server.inference)
