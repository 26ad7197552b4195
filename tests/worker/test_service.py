"""Service: request decoding, output encoding, TorchServe's error codes and batch isolation."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from marserve.context import Context
from marserve.errors import PredictionException
from marserve.results import PredictionResult
from marserve.service import Service

Handler = Callable[[Any, Context], Any]


def make_service(
    tmp_path: Path, handler: Handler, *, manifest: dict[str, Any] | None = None, **kwargs: Any
) -> Service:
    manifest = manifest or {"model": {"modelName": "tiny", "handler": "handler.py"}}
    return Service("tiny", str(tmp_path), manifest, handler, None, 8, **kwargs)


class Recorder:
    """An entry point that answers each body, fails on poison, and counts its calls."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.batch_sizes: list[int] = []

    def __call__(self, data: Any, context: Context) -> Any:
        self.batch_sizes.append(len(data))
        bodies = [row["body"] for row in data]
        if self.error is not None and "poison" in bodies:
            raise self.error
        return [{"answer": body} for body in bodies]


def error_body(result: PredictionResult) -> dict[str, Any]:
    assert result.content_type == "application/json"
    body: dict[str, Any] = json.loads(result.body)
    assert body["code"] == result.status
    return body


# --- decoding -----------------------------------------------------------------------------------


def test_retrieve_data_decodes_json_text_and_keeps_binary(make_request: Any) -> None:
    batch = [
        make_request({"x": [1, 2]}, request_id="a", headers={"X-Trace": "t1"}),
        make_request(b"caf\xc3\xa9", request_id="b", content_type="text/plain; charset=utf-8"),
        make_request(b"\x00\x01", request_id="c", content_type="application/octet-stream"),
        make_request(b"{not json", request_id="d", content_type="application/json"),
    ]
    headers, inputs, ids = Service.retrieve_data_for_inference(batch)
    assert ids == {0: "a", 1: "b", 2: "c", 3: "d"}
    assert inputs == [
        {"body": {"x": [1, 2]}},
        {"body": "café"},
        {"body": b"\x00\x01"},
        {"body": b"{not json"},
    ]
    assert headers[0].get_request_properties() == {
        "body": {"content-type": "application/json"},
        "X-Trace": "t1",
    }
    assert headers[2].get_request_property("body") == {"content-type": "application/octet-stream"}


def test_retrieve_data_takes_every_parameter_by_name() -> None:
    batch = [
        {
            "requestId": "form",
            "parameters": [
                {"name": "data", "contentType": b"application/json", "value": b"[1]"},
                {"name": "target", "contentType": "text/plain", "value": b"3"},
            ],
        }
    ]
    _, inputs, ids = Service.retrieve_data_for_inference(batch)
    assert inputs == [{"data": [1], "target": "3"}]
    assert ids == {0: "form"}


def test_retrieve_data_rejects_none() -> None:
    with pytest.raises(ValueError, match="None"):
        Service.retrieve_data_for_inference(None)


# --- encoding -----------------------------------------------------------------------------------


def test_outputs_are_encoded_by_type(tmp_path: Path, make_batch: Any) -> None:
    tensor = torch.arange(3.0)
    outputs = ["text é", b"\x00raw", bytearray(b"ba"), {"k": [1, 2]}, [0.5], tensor]
    service = make_service(tmp_path, lambda data, context: outputs)
    results = service.predict(make_batch([0] * len(outputs)))
    assert [r.status for r in results] == [200] * 6
    assert [r.request_id for r in results] == [f"r{i}" for i in range(6)]
    assert results[0].body == "text é".encode() and results[0].content_type.startswith("text/plain")
    assert results[1].body == b"\x00raw" and results[1].content_type == "application/octet-stream"
    assert results[2].body == b"ba"
    assert json.loads(results[3].body) == {"k": [1, 2]}
    assert results[3].content_type == "application/json"
    assert json.loads(results[4].body) == [0.5]
    assert torch.equal(torch.load(io.BytesIO(results[5].body)), tensor)


def test_handler_set_content_type_status_and_headers_win(tmp_path: Path, make_batch: Any) -> None:
    def handler(data: Any, context: Context) -> list[Any]:
        context.set_response_content_type(0, "image/png")
        context.set_response_status(201, "Created", idx=1)
        context.set_response_header(1, "X-Model", "tiny")
        return [b"\x89PNG", {"ok": True}]

    first, second = make_service(tmp_path, handler).predict(make_batch([1, 2]))
    assert (first.status, first.content_type, dict(first.headers)) == (200, "image/png", {})
    assert (second.status, second.content_type) == (201, "application/json")
    assert dict(second.headers) == {"X-Model": "tiny"}


def test_request_state_is_fresh_for_every_batch(tmp_path: Path, make_batch: Any) -> None:
    def handler(data: Any, context: Context) -> list[Any]:
        if data[0]["body"] == "first":
            context.set_all_response_status(202, "Accepted")
        return [context.get_request_id(i) for i in range(len(data))]

    service = make_service(tmp_path, handler)
    assert [r.status for r in service.predict(make_batch(["first", 0]))] == [202, 202]
    results = service.predict(make_batch(["second"]))
    assert (results[0].status, results[0].body) == (200, b"r0")


def test_prediction_time_is_recorded_in_ms(tmp_path: Path, make_batch: Any) -> None:
    service = make_service(tmp_path, Recorder())
    service.predict(make_batch([1, 2]))
    (record,) = service.context.metrics.drain()  # type: ignore[union-attr]
    assert (record.name, record.unit, record.metric_type) == ("PredictionTime", "ms", "gauge")
    assert record.value >= 0
    assert record.dimensions == {"ModelName": "tiny", "Level": "Model"}
    assert record.request_id == "r0,r1"


def test_model_yaml_named_by_manifest_reaches_the_context(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("minWorkers: 2\nhandler:\n  topk: 3\n")
    manifest = {"model": {"modelName": "tiny", "handler": "h.py", "configFile": "cfg.yaml"}}
    service = make_service(tmp_path, Recorder(), manifest=manifest)
    assert service.context.model_yaml_config == {"minWorkers": 2, "handler": {"topk": 3}}
    assert service.context.system_properties["batch_size"] == 8


def test_missing_model_config_is_named(tmp_path: Path) -> None:
    manifest = {"model": {"modelName": "tiny", "handler": "h.py", "configFile": "gone.yaml"}}
    with pytest.raises(FileNotFoundError, match=r"model config gone\.yaml named by the manifest"):
        make_service(tmp_path, Recorder(), manifest=manifest)


def test_model_config_must_be_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("- just\n- a list\n")
    manifest = {"model": {"modelName": "tiny", "handler": "h.py", "configFile": "cfg.yaml"}}
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        make_service(tmp_path, Recorder(), manifest=manifest)


# --- error paths (single request: no isolation involved) -----------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (MemoryError(), 507, "Out of resources"),
        (
            torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
            507,
            "Out of resources",
        ),
        (RuntimeError("CUDA error: device-side assert triggered"), 507, "Out of resources"),
        (PredictionException("image too large", 413), 413, "image too large"),
        (PredictionException("default code"), 500, "default code"),
        (ValueError("bug"), 503, "Prediction failed"),
    ],
)
def test_handler_exceptions_map_to_torchserve_codes(
    tmp_path: Path, make_batch: Any, error: BaseException, status: int, message: str
) -> None:
    handler = Recorder(error)
    (result,) = make_service(tmp_path, handler).predict(make_batch(["poison"]))
    assert result.status == status
    assert error_body(result)["message"] == message
    assert handler.batch_sizes == [1]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"not": "a list"}, "Invalid model predict output"),
        (None, "Invalid model predict output"),
        (["only one"], "number of batch response mismatched"),
        ([object(), object()], "Unsupported model output data type."),
    ],
)
def test_bad_handler_output_fails_the_batch_without_retries(
    tmp_path: Path, make_batch: Any, output: Any, message: str
) -> None:
    calls: list[int] = []

    def handler(data: Any, context: Context) -> Any:
        calls.append(len(data))
        return output

    results = make_service(tmp_path, handler).predict(make_batch([1, 2]))
    assert [r.status for r in results] == [503, 503]
    assert {error_body(r)["message"] for r in results} == {message}
    assert calls == [2], "a malformed output is the handler's fault: re-running would not help"


def test_no_metric_is_recorded_for_a_failed_batch(tmp_path: Path, make_batch: Any) -> None:
    service = make_service(tmp_path, Recorder(ValueError("bug")))
    service.predict(make_batch(["poison"]))
    assert service.context.metrics.drain() == []  # type: ignore[union-attr]


# --- batch isolation ----------------------------------------------------------------------------


def test_one_poison_request_in_eight_fails_alone(tmp_path: Path, make_batch: Any) -> None:
    handler = Recorder(PredictionException("poisoned request", 422))
    bodies: list[Any] = [0, 1, 2, "poison", 4, 5, 6, 7]
    results = make_service(tmp_path, handler).predict(make_batch(bodies))
    assert [r.request_id for r in results] == [f"r{i}" for i in range(8)]
    assert [r.status for r in results] == [200, 200, 200, 422, 200, 200, 200, 200]
    assert json.loads(results[5].body) == {"answer": 5}
    assert error_body(results[3])["message"] == "poisoned request"
    assert handler.batch_sizes == [8] + [1] * 8


def test_generic_failure_isolated_gives_503_to_the_culprit_only(
    tmp_path: Path, make_batch: Any
) -> None:
    results = make_service(tmp_path, Recorder(KeyError("x"))).predict(make_batch([1, "poison"]))
    assert [r.status for r in results] == [200, 503]
    assert error_body(results[1])["message"] == "Prediction failed"


def test_out_of_memory_batch_is_retried_request_by_request(tmp_path: Path, make_batch: Any) -> None:
    def handler(data: Any, context: Context) -> list[Any]:
        if len(data) > 1:
            raise MemoryError()
        return [row["body"] for row in data]

    results = make_service(tmp_path, handler).predict(make_batch([1, 2, 3]))
    assert [(r.status, r.body) for r in results] == [(200, b"1"), (200, b"2"), (200, b"3")]


def test_single_request_out_of_memory_is_not_retried(tmp_path: Path, make_batch: Any) -> None:
    handler = Recorder(MemoryError())
    (result,) = make_service(tmp_path, handler).predict(make_batch(["poison"]))
    assert result.status == 507
    assert handler.batch_sizes == [1]


def test_cuda_error_that_is_not_out_of_memory_is_not_retried(
    tmp_path: Path, make_batch: Any
) -> None:
    handler = Recorder(RuntimeError("CUDA error: an illegal memory access was encountered"))
    results = make_service(tmp_path, handler).predict(make_batch([1, "poison", 3]))
    assert [r.status for r in results] == [507, 507, 507]
    assert handler.batch_sizes == [3], "a broken CUDA context fails every re-run too"


@pytest.mark.parametrize("how", ["constructor", "yaml"])
def test_isolation_can_be_switched_off(tmp_path: Path, make_batch: Any, how: str) -> None:
    handler = Recorder(PredictionException("poisoned request", 422))
    if how == "constructor":
        service = make_service(tmp_path, handler, isolate_batch_failures=False)
    else:
        (tmp_path / "cfg.yaml").write_text("isolateBatchFailures: false\n")
        manifest = {"model": {"modelName": "tiny", "handler": "h.py", "configFile": "cfg.yaml"}}
        service = make_service(tmp_path, handler, manifest=manifest)
    results = service.predict(make_batch([1, "poison", 3]))
    assert [r.status for r in results] == [422, 422, 422]
    assert handler.batch_sizes == [3]


def test_constructor_flag_beats_the_yaml(tmp_path: Path, make_batch: Any) -> None:
    (tmp_path / "cfg.yaml").write_text("isolateBatchFailures: false\n")
    manifest = {"model": {"modelName": "tiny", "handler": "h.py", "configFile": "cfg.yaml"}}
    handler = Recorder(ValueError("bug"))
    service = make_service(tmp_path, handler, manifest=manifest, isolate_batch_failures=True)
    assert [r.status for r in service.predict(make_batch([1, "poison"]))] == [200, 503]


def test_batch_that_already_streamed_is_not_re_run(tmp_path: Path, make_batch: Any) -> None:
    streamed: list[PredictionResult] = []

    def handler(data: Any, context: Context) -> list[Any]:
        context.send_intermediate(
            PredictionResult(request_id="r0", status=200, body=b"part", content_type="text/plain")
        )
        raise ValueError("failed after streaming")

    service = make_service(tmp_path, handler)
    service.context.intermediate_response_sink = streamed.append
    results = service.predict(make_batch([1, 2]))
    assert [r.status for r in results] == [503, 503]
    assert len(streamed) == 1, "re-running would send the streamed part twice"


def test_stateful_sequence_batch_is_not_re_run(tmp_path: Path, make_request: Any) -> None:
    handler = Recorder(ValueError("bug"))
    batch = [
        make_request(1, request_id="a", headers={"ts_request_sequence_id": "seq-1"}),
        make_request("poison", request_id="b"),
    ]
    results = make_service(tmp_path, handler).predict(batch)
    assert [r.status for r in results] == [503, 503]
    assert handler.batch_sizes == [2], "a sequence's state must not advance twice"
