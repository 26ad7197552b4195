"""Archives built by the real torch-model-archiver, with handlers written for TorchServe.

Each archive's handler imports `ts.*` exactly as it would under TorchServe; loaded through
`load_service` / `ModelLoader`, it must answer what the model answers when run directly.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch

from marserve.model_loader import ModelLoader, load_service
from marserve.service import Service
from support import models

TS_HANDLER = '''
import torch
from ts.context import Context
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException


class TinyMLPHandler(BaseHandler):
    """Rows of 8 numbers in, 4 scores out; anything else is the client's mistake (400)."""

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.model_name = context.manifest["model"]["modelName"]

    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") or row.get("body")
            if not isinstance(body, list) or len(body) != 8:
                raise PredictionException("expected a JSON list of 8 numbers", 400)
            rows.append(body)
        return torch.tensor(rows, dtype=torch.float32)

    def postprocess(self, data):
        self.context.set_response_header(0, "X-Model", self.model_name)
        return data.tolist()
'''

Writer = Callable[[torch.nn.Module, Path], dict[str, Path]]

WRITERS: dict[str, Writer] = {
    "eager": lambda model, d: dict(
        zip(("model_file", "serialized_file"), models.write_eager(model, d), strict=True)
    ),
    "torchscript": lambda model, d: {"serialized_file": models.write_torchscript(model, d)},
    "onnx": lambda model, d: {"serialized_file": models.write_onnx(model, d)},
}


MODEL_TYPES: dict[str, type] = {
    "eager": torch.nn.Module,
    "torchscript": torch.jit.ScriptModule,
    "onnx": onnxruntime.InferenceSession,
}
"""What each archive must really run on: the ONNX archive is served by onnxruntime."""


def archive_and_unzip(
    fmt: str, workdir: Path, *, config: str | None = None, name: str | None = None
) -> Path:
    """Writes the model in `fmt`, archives it with torch-model-archiver, unzips the MAR."""
    name = name or f"mlp_{fmt}"
    source = workdir / f"{name}-src"
    files = WRITERS[fmt](models.make_mlp(), source)
    handler = models.write_text(source / "mlp_handler.py", TS_HANDLER)
    config_file = models.write_text(source / "model-config.yaml", config) if config else None
    mar = models.torch_model_archiver(
        model_name=name,
        handler=handler,
        export_path=workdir / "export",
        config_file=config_file,
        **files,
    )
    model_dir = workdir / name
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    workdir = tmp_path_factory.mktemp("archives")
    return {fmt: archive_and_unzip(fmt, workdir) for fmt in WRITERS}


def rows_batch(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "requestId": f"req-{i}".encode(),
            "parameters": [
                {
                    "name": "body",
                    "contentType": "application/json",
                    "value": json.dumps(row).encode(),
                }
            ],
        }
        for i, row in enumerate(rows)
    ]


def inputs(count: int) -> list[list[float]]:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(count, 8, generator=generator).tolist()


def assert_matches_model(service: Service, rows: list[list[float]]) -> None:
    expected = models.make_mlp()(torch.tensor(rows)).detach()
    results = service.predict(rows_batch(rows))
    assert [r.status for r in results] == [200] * len(rows)
    got = torch.tensor([json.loads(r.body) for r in results])
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_archive_answers_like_the_model(archives: dict[str, Path], fmt: str) -> None:
    model_dir = archives[fmt]
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    assert manifest["archiverVersion"] == "0.12.0"
    service = load_service(model_dir, batch_size=4)
    assert service.context.model_name == f"mlp_{fmt}"
    handler = service._entry_point.__self__  # type: ignore[union-attr]
    assert type(handler).__module__ == "mlp_handler", "the archive's own handler runs"
    assert isinstance(handler.model, MODEL_TYPES[fmt])
    assert_matches_model(service, inputs(4))
    assert service.predict(rows_batch(inputs(1)))[0].headers == {"X-Model": f"mlp_{fmt}"}
    names = {record.name for record in service.context.metrics.drain()}  # type: ignore[union-attr]
    assert {"PredictionTime", "HandlerTime"} <= names


def test_torchserve_loader_interface_loads_the_archive(archives: dict[str, Path]) -> None:
    service = ModelLoader().load("renamed", str(archives["torchscript"]), batch_size=2)
    assert service.context.model_name == "renamed"
    assert_matches_model(service, inputs(2))


def test_one_poison_request_in_a_batch_of_eight(archives: dict[str, Path]) -> None:
    service = load_service(archives["eager"], batch_size=8)
    rows: list[Any] = inputs(8)
    rows[5] = "not a row"
    results = service.predict(rows_batch(rows))
    assert [r.status for r in results] == [200] * 5 + [400] + [200] * 2
    assert json.loads(results[5].body) == {
        "code": 400,
        "type": "InternalServerException",
        "message": "expected a JSON list of 8 numbers",
    }
    good = [row for i, row in enumerate(rows) if i != 5]
    expected = models.make_mlp()(torch.tensor(good)).detach()
    got = torch.tensor([json.loads(r.body) for i, r in enumerate(results) if i != 5])
    assert torch.allclose(got, expected, atol=1e-5)


def test_archive_config_can_turn_isolation_off(tmp_path: Path) -> None:
    model_dir = archive_and_unzip("torchscript", tmp_path, config="isolateBatchFailures: false\n")
    service = load_service(model_dir, batch_size=3)
    assert service.context.model_yaml_config == {"isolateBatchFailures": False}
    results = service.predict(rows_batch([*inputs(2), "bad"]))
    assert [r.status for r in results] == [400, 400, 400]
