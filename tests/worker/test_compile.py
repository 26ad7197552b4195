"""torch.compile from the model YAML: options as written, and eager whenever compiling fails."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

from marserve.handlers.base_handler import BaseHandler
from marserve.loading.compile import EagerFallback, compile_model, compile_options
from support import handler_fixtures, models

BATCH = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _broken_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    raise RuntimeError("this backend cannot compile anything")


def _counting_backend(calls: list[int]) -> Callable[..., Any]:
    def backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        calls.append(len(example_inputs))
        return gm.forward

    return backend


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ({}, None),
        ({"minWorkers": 1}, None),
        ({"pt2": {"compile": {"enable": True, "backend": "inductor", "mode": "max-autotune"}}},
         {"backend": "inductor", "mode": "max-autotune"}),
        ({"pt2": {"compile": {"backend": "eager", "fullgraph": True, "dynamic": False}}},
         {"backend": "eager", "fullgraph": True, "dynamic": False}),
        ({"pt2": {"compile": {"enable": True, "options": {"epilogue_fusion": True}}}},
         {"options": {"epilogue_fusion": True}}),
        ({"pt2": {"compile": {"enable": False, "backend": "inductor"}}}, None),
        ({"pt2": {"compile": None}}, {}),
        ({"pt2": {"export": {"aot_compile": True}}}, None),
        ({"pt2": "aot_eager"}, {"backend": "aot_eager"}),
        ({"pt2": {"backend": "eager", "mode": "reduce-overhead"}},
         {"backend": "eager", "mode": "reduce-overhead"}),
    ],
)  # fmt: skip
def test_options_from_the_model_yaml(yaml: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert compile_options(yaml) == expected


@pytest.mark.parametrize("pt2", [["eager"], 3, {"compile": "eager"}])
def test_malformed_pt2_is_a_clear_error(pt2: object) -> None:
    with pytest.raises(ValueError, match=r"model YAML: pt2"):
        compile_options({"pt2": pt2})


def test_compiled_model_gives_eager_results() -> None:
    model = models.make_mlp()
    calls: list[int] = []
    compiled = compile_model(model, {"backend": _counting_backend(calls), "dynamic": False})
    assert isinstance(compiled, EagerFallback)
    torch.testing.assert_close(compiled(BATCH), model(BATCH))
    assert calls, "the backend compiled the graph"
    assert compiled.is_compiled
    assert compiled.layers is model.layers, "attributes of the model stay reachable"


def test_backend_failing_at_first_call_falls_back_to_eager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = models.make_mlp()
    compiled = compile_model(model, {"backend": _broken_backend})
    with caplog.at_level(logging.WARNING, logger="marserve.loading.compile"):
        first = compiled(BATCH)
    torch.testing.assert_close(first, model(BATCH))
    assert not compiled.is_compiled
    assert "failed at run time, running eager" in caplog.text
    assert "this backend cannot compile anything" in caplog.text
    torch.testing.assert_close(compiled(BATCH[:1]), model(BATCH[:1]))


def test_compile_time_failure_returns_the_model_itself(caplog: pytest.LogCaptureFixture) -> None:
    model = models.make_mlp()
    with caplog.at_level(logging.WARNING, logger="marserve.loading.compile"):
        result = compile_model(model, {"backend": "no-such-backend"})
    assert result is model
    assert "torch.compile(backend='no-such-backend') failed, running eager" in caplog.text


def test_bad_input_is_the_callers_error_and_keeps_compilation() -> None:
    model = models.make_mlp()
    compiled = compile_model(model, {"backend": _counting_backend([])})
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        compiled(torch.zeros(2, 3))
    assert compiled.is_compiled
    torch.testing.assert_close(compiled(BATCH), model(BATCH))


def test_non_module_models_are_left_alone() -> None:
    def function(x: torch.Tensor) -> torch.Tensor:
        return x

    assert compile_model(function, {"backend": "eager"}) is function


def _initialize(tmp_path: Path, yaml: dict[str, Any]) -> BaseHandler:
    models.write_eager(models.make_mlp(seed=9), tmp_path)
    handler = BaseHandler()
    handler.initialize(
        handler_fixtures.make_context(
            tmp_path, model_file="model.py", serialized_file="model.pth", model_yaml_config=yaml
        )
    )
    return handler


def test_handler_compiles_when_the_yaml_asks(tmp_path: Path) -> None:
    handler = _initialize(tmp_path, {"pt2": {"compile": {"enable": True, "backend": "aot_eager"}}})
    assert isinstance(handler.model, EagerFallback) and handler.model.is_compiled
    context = handler_fixtures.with_headers(handler.context, [{}] * 4)  # type: ignore[arg-type]
    output = torch.tensor(handler.handle(BATCH.tolist(), context))
    torch.testing.assert_close(output, models.make_mlp(seed=9)(BATCH).detach())
    assert handler.model.is_compiled


def test_handler_honours_enable_false(tmp_path: Path) -> None:
    handler = _initialize(tmp_path, {"pt2": {"compile": {"enable": False, "backend": "eager"}}})
    assert not isinstance(handler.model, EagerFallback)


def test_handler_survives_a_broken_backend(tmp_path: Path) -> None:
    if "marserve_test_broken" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(_broken_backend, name="marserve_test_broken")
    handler = _initialize(tmp_path, {"pt2": {"compile": {"backend": "marserve_test_broken"}}})
    context = handler_fixtures.with_headers(handler.context, [{}] * 4)  # type: ignore[arg-type]
    output = torch.tensor(handler.handle(BATCH.tolist(), context))
    torch.testing.assert_close(output, models.make_mlp(seed=9)(BATCH).detach())
    assert not handler.model.is_compiled
