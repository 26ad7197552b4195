"""Handlers and envelopes run with contexts that are not marserve's.

Users unit-test handlers with TorchServe's `MockContext` or their own doubles; those offer only
TorchServe's public Context API, never marserve's `request_processor` list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from marserve import envelopes
from marserve.compat.metrics_store import MetricsStore
from marserve.compat.mock_context import MockContext
from marserve.handlers.base_handler import BaseHandler
from support import models

ROWS = [[float(i + j) for j in range(8)] for i in range(2)]


class PublicContext:
    """A double with TorchServe's public Context attributes and methods, and nothing else."""

    def __init__(self, model_dir: Path, headers: Sequence[Mapping[str, str]]) -> None:
        self.model_name = "tiny"
        self.manifest = {"model": {"modelName": "tiny", "serializedFile": "model.pt"}}
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.model_yaml_config: dict[str, Any] = {}
        self.metrics = MetricsStore({i: f"r{i}" for i in range(len(headers))}, "tiny")
        self._headers = [dict(h) for h in headers]
        self._responses: list[dict[str, Any]] = [{"headers": {}} for _ in headers]

    def get_request_id(self, idx: int = 0) -> str:
        return f"r{idx}"

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._headers[idx].get(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self._headers[idx]

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str]:
        return self._responses[idx].get("status", (200, ""))  # type: ignore[no-any-return]

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self._responses[idx]["status"] = (code, phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for idx in range(len(self._responses)):
            self.set_response_status(code, phrase, idx)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._responses[idx]["headers"]  # type: ignore[no-any-return]

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._responses[idx]["headers"][key] = value

    def get_sequence_id(self, idx: int) -> str | None:
        return self.get_request_header(idx, "ts_request_sequence_id")


class Explained(BaseHandler):
    def get_insights(self, tensor: torch.Tensor, inputs: Any, target: int) -> list[Any]:
        return [{"target": target, "rows": len(tensor)}]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    models.write_torchscript(models.make_mlp(seed=5), tmp_path)
    return tmp_path


@pytest.fixture
def model(model_dir: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(model_dir / "model.pt"))


def test_handle_with_torchserve_mock_context(
    model_dir: Path, model: torch.jit.ScriptModule
) -> None:
    context = MockContext(model_dir=str(model_dir), model_file=None)
    handler = BaseHandler()
    handler.initialize(context)
    output = handler.handle(ROWS, context)
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())
    assert [metric.name for metric in context.metrics.store] == ["HandlerTime"]


def test_mock_context_matches_torchserve_s(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("batchSize: 4\n")
    context = MockContext(model_dir=str(tmp_path), model_yaml_config_file="config.yaml")
    assert context.manifest == {"model": {"serializedFile": "model.pt", "modelFile": "model.py"}}
    assert context.model_yaml_config == {"batchSize": 4}
    assert context.metrics.model_name == "mnist"
    assert context.get_request_header(1, "explain") is False
    context.explain = True
    assert context.get_request_header(1, "explain") is True
    assert context.get_request_header(0, "explain") is False, "TorchServe's idx-0 quirk"


def test_handle_with_a_public_api_double(model_dir: Path, model: torch.jit.ScriptModule) -> None:
    context = PublicContext(model_dir, [{}, {}])
    handler = BaseHandler()
    handler.initialize(context)  # type: ignore[arg-type]
    output = handler.handle(ROWS, context)  # type: ignore[arg-type]
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())
    assert context.metrics.store[0].name == "HandlerTime"


def test_explain_and_describe_headers_through_the_public_api(model_dir: Path) -> None:
    handler = Explained()
    handler.initialize(PublicContext(model_dir, [{}]))  # type: ignore[arg-type]
    explain = PublicContext(model_dir, [{"explain": "True"}])
    rows = [{"data": ROWS[0], "target": 3}]
    assert handler.handle([ROWS[0]], explain) == [{"target": 0, "rows": 1}]  # type: ignore[arg-type]
    assert handler.handle(rows, explain) == [{"target": 3, "rows": 1}]  # type: ignore[arg-type]
    assert handler.explain is True
    describe = PublicContext(model_dir, [{"describe": "True"}])
    (description,) = handler.handle([ROWS[0]], describe)  # type: ignore[arg-type]
    assert description["handler"] == "Explained"


def test_kserve_envelopes_with_a_public_api_double(model_dir: Path) -> None:
    def doubled(data: Any, context: Any) -> list[Any]:
        return [
            [value * 2 for value in row["data"]] if isinstance(row, dict) else row * 2
            for row in data
        ]

    context = PublicContext(model_dir, [{"explain": "True"}])
    kserve = envelopes.KServeEnvelope(doubled)
    assert kserve.handle([{"body": {"instances": [1]}}], context) == [{"explanations": [2]}]  # type: ignore[arg-type]
    v2 = envelopes.KServeV2Envelope(doubled)
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}
    (answer,) = v2.handle([{"body": body}], context)  # type: ignore[arg-type]
    assert answer["id"] == "r0" and answer["model_name"] == "tiny"
    assert answer["outputs"][0]["data"] == [2, 4]
