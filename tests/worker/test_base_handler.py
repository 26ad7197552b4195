"""BaseHandler's contract: TorchServe's attributes, stages, headers and the HandlerTime metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from marserve.errors import PredictionException
from marserve.handlers.base_handler import BaseHandler
from marserve.handlers.timer import timed
from support import handler_fixtures, models
from support.handler_fixtures import InferenceModeProbe

ROWS = [[float(i + j) for j in range(8)] for i in range(3)]


@pytest.fixture
def served(tmp_path: Path) -> tuple[BaseHandler, torch.nn.Module]:
    model = models.make_mlp(seed=11)
    models.write_torchscript(model, tmp_path)
    handler = BaseHandler()
    handler.initialize(handler_fixtures.make_context(tmp_path, serialized_file="model.pt"))
    return handler, model


def _context(handler: BaseHandler, headers: list[dict[str, str]]) -> Any:
    assert handler.context is not None
    return handler_fixtures.with_headers(handler.context, headers)


def test_new_handler_has_torchserve_attributes() -> None:
    handler = BaseHandler()
    assert (handler.model, handler.mapping, handler.device, handler.context) == (None,) * 4
    assert (handler.model_pt_path, handler.manifest, handler.map_location) == (None,) * 3
    assert handler.initialized is False and handler.explain is False
    assert handler.target == 0 and handler.profiler_args == {}


def test_initialize_fills_them_in(
    served: tuple[BaseHandler, torch.nn.Module], tmp_path: Path
) -> None:
    handler, _ = served
    assert handler.initialized
    assert handler.device == torch.device("cpu") and handler.map_location == "cpu"
    assert handler.model_pt_path == str(tmp_path / "model.pt")
    assert handler.manifest is not None and handler.manifest["model"]["modelName"] == "tiny"
    assert handler.mapping is None


def test_handle_runs_the_stages_and_matches_the_model(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    handler, model = served
    output = handler.handle(ROWS, _context(handler, [{}] * 3))
    assert isinstance(output, list) and len(output) == 3
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())


def test_handler_time_is_recorded_in_ms(served: tuple[BaseHandler, torch.nn.Module]) -> None:
    handler, _ = served
    context = _context(handler, [{}] * 3)
    handler.handle(ROWS, context)
    records = context.metrics.drain()
    assert [(r.name, r.unit) for r in records] == [("HandlerTime", "ms")]
    assert records[0].value > 0


def test_inference_runs_in_inference_mode(served: tuple[BaseHandler, torch.nn.Module]) -> None:
    handler, _ = served
    handler.model = InferenceModeProbe()
    output = handler.inference(torch.ones(2, 3))
    assert output[:, -1].tolist() == [1.0, 1.0]
    torch.testing.assert_close(output[:, :3], torch.full((2, 3), 2.0))


def test_subclass_overrides_only_what_it_needs(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    base, model = served

    class ArgmaxHandler(BaseHandler):
        def preprocess(self, data: Any) -> torch.Tensor:
            return torch.stack([torch.tensor(row["body"], dtype=torch.float32) for row in data])

        def postprocess(self, data: torch.Tensor) -> list[int]:
            return data.argmax(dim=1).tolist()

    handler = ArgmaxHandler()
    assert base.context is not None
    handler.initialize(base.context)
    output = handler.handle([{"body": row} for row in ROWS], _context(handler, [{}] * 3))
    assert output == model(torch.tensor(ROWS)).argmax(dim=1).tolist()


def test_describe_header_answers_a_description(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    handler, _ = served
    output = handler.handle(ROWS, _context(handler, [{"describe": "True"}]))
    assert output == [
        {
            "modelName": "tiny",
            "modelVersion": "1.0",
            "handler": "BaseHandler",
            "format": "torchscript",
            "device": "cpu",
            "compiled": False,
        }
    ]


def test_explain_without_insights_is_501(served: tuple[BaseHandler, torch.nn.Module]) -> None:
    handler, _ = served
    with pytest.raises(PredictionException) as caught:
        handler.handle(ROWS, _context(handler, [{"explain": "True"}]))
    assert caught.value.error_code == 501
    assert "BaseHandler does not provide explanations" in caught.value.message


def test_explain_calls_get_insights_with_the_target(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    base, _ = served
    seen: list[tuple[Any, Any, Any]] = []

    class Explaining(BaseHandler):
        def preprocess(self, data: Any) -> torch.Tensor:
            return torch.tensor([row["data"] for row in data], dtype=torch.float32)

        def get_insights(self, tensor: torch.Tensor, inputs: Any, target: int) -> list[str]:
            seen.append((tensor.shape, inputs, target))
            return ["insight"]

    handler = Explaining()
    assert base.context is not None
    handler.initialize(base.context)
    rows = [{"data": ROWS[0], "target": 2}]
    assert handler.handle(rows, _context(handler, [{"explain": "True"}])) == ["insight"]
    assert seen == [(torch.Size([1, 8]), ROWS[0], 2)]
    assert handler.explain and handler.target == 2
    assert handler.handle(rows, _context(handler, [{"explain": "False"}])) != ["insight"]


def test_profiler_runs_the_stages_and_hands_over_the_trace(
    served: tuple[BaseHandler, torch.nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, model = served
    traces: list[Any] = []
    handler.profiler_args = {
        "activities": [torch.profiler.ProfilerActivity.CPU],
        "on_trace_ready": traces.append,
    }
    monkeypatch.setenv("ENABLE_TORCH_PROFILER", "true")
    output = handler.handle(ROWS, _context(handler, [{}] * 3))
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())
    assert len(traces) == 1
    assert any("aten::" in event.name for event in traces[0].events())


def test_handle_without_request_headers_still_predicts(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    """A handler driven directly (no batch headers set) must not trip over header checks."""
    handler, model = served
    assert handler.context is not None
    handler.context.request_processor = None
    output = handler.handle(ROWS, handler.context)
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())


@pytest.mark.parametrize("profile", [True, False])
def test_stage_timings_when_the_yaml_asks(
    served: tuple[BaseHandler, torch.nn.Module], profile: bool
) -> None:
    handler, _ = served
    context = _context(handler, [{}] * 3)
    context.model_yaml_config = {"handler": {"profile": profile}}
    handler.handle(ROWS, context)
    names = [record.name for record in context.metrics.drain()]
    stages = ["ts_handler_preprocess", "ts_handler_inference", "ts_handler_postprocess"]
    assert names == [*stages, "HandlerTime"] if profile else ["HandlerTime"]


def test_custom_handlers_time_their_own_methods(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    base, _ = served

    class Custom(BaseHandler):
        @timed
        def preprocess(self, data: Any) -> torch.Tensor:
            return torch.tensor(data, dtype=torch.float32)

    handler = Custom()
    assert base.context is not None
    handler.initialize(base.context)
    context = _context(handler, [{}] * 3)
    context.model_yaml_config = {"handler": {"profile": True}}
    handler.handle(ROWS, context)
    records = [r for r in context.metrics.drain() if r.name == "ts_handler_preprocess"]
    assert len(records) == 1 and records[0].unit == "ms"


def test_default_preprocess_takes_the_payload_of_request_rows(
    served: tuple[BaseHandler, torch.nn.Module],
) -> None:
    handler, model = served
    rows: list[Any] = [{"body": ROWS[0]}, {"data": ROWS[1]}, ROWS[2]]
    output = handler.handle(rows, _context(handler, [{}] * 3))
    torch.testing.assert_close(torch.tensor(output), model(torch.tensor(ROWS)).detach())
