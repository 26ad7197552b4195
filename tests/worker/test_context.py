"""Context, RequestProcessor and PredictionException keep TorchServe 0.12's shapes."""

from __future__ import annotations

import pytest

from marserve.context import Context, RequestProcessor
from marserve.errors import PredictionException
from marserve.handler_metrics import HandlerMetrics
from marserve.results import PredictionResult
from marserve.streaming import send_intermediate_predict_response


def make_context(*headers: dict[str, object]) -> Context:
    context = Context("tiny", "/models/tiny", {"model": {"modelName": "tiny"}}, 4, None)
    context.request_ids = {i: f"r{i}" for i in range(len(headers))}
    context.request_processor = [RequestProcessor(h) for h in headers]
    return context


def test_system_properties_have_torchserve_keys() -> None:
    context = Context(
        "tiny", "/m", {}, 4, 1, limit_max_image_pixels=False, metrics=HandlerMetrics("tiny")
    )
    assert context.system_properties == {
        "model_dir": "/m",
        "gpu_id": 1,
        "batch_size": 4,
        "server_name": "MMS",
        "server_version": "0.12.0",
        "limit_max_image_pixels": False,
    }
    assert context.model_yaml_config == {}
    assert context.cl_socket is None
    assert isinstance(context.metrics, HandlerMetrics)


def test_request_headers_and_ids() -> None:
    context = make_context({"body": {"content-type": "text/plain"}, "explain": "True"}, {})
    assert context.get_request_id() == "r0"
    assert context.get_request_id(1) == "r1"
    assert context.get_request_header(0, "explain") == "True"
    assert context.get_request_header(1, "explain") is None
    assert context.get_all_request_header(0)["body"] == {"content-type": "text/plain"}


def test_response_status_headers_and_content_type_per_request() -> None:
    context = make_context({}, {})
    assert context.get_response_status(0) == (200, None)
    context.set_response_status(404, "Not Found", idx=1)
    context.set_response_content_type(0, "text/csv")
    context.set_response_header(0, "X-A", "1")
    assert context.get_response_status(1) == (404, "Not Found")
    assert context.get_response_status(0) == (200, None)
    assert context.get_response_content_type(0) == "text/csv"
    assert context.get_response_headers(0) == {"content-type": "text/csv", "X-A": "1"}
    assert context.get_response_headers(1) == {}
    context.set_all_response_status(206, "Partial")
    assert [context.get_response_status(i) for i in (0, 1)] == [(206, "Partial")] * 2


def test_sequence_id_comes_from_the_sequence_header() -> None:
    context = make_context({"ts_request_sequence_id": "seq-7"}, {})
    assert context.get_sequence_id(0) == "seq-7"
    assert context.get_sequence_id(1) is None


def test_request_state_outside_handle_is_a_clear_error() -> None:
    context = Context("tiny", "/m", {}, 1, None)
    assert context.get_request_id() is None
    context.set_response_status(500)  # TorchServe ignores it outside a request: so do we
    with pytest.raises(RuntimeError, match="only in handle"):
        context.get_request_header(0, "x")


def test_prediction_exception_matches_torchserve() -> None:
    error = PredictionException("too big", 413)
    assert (error.message, error.error_code) == ("too big", 413)
    assert str(error) == "too big : 413"
    assert PredictionException("x").error_code == 500


def test_intermediate_responses_go_to_the_sink_per_request() -> None:
    context = make_context({}, {})
    context.set_response_content_type(1, "text/event-stream")
    sent: list[PredictionResult] = []
    context.intermediate_response_sink = sent.append
    send_intermediate_predict_response(["tok", {"t": 1}], {0: "r0", 1: "r1"}, "msg", 200, context)
    assert [(r.request_id, r.body, r.content_type) for r in sent] == [
        ("r0", b"tok", "text/plain; charset=utf-8"),
        ("r1", b'{\n  "t": 1\n}', "text/event-stream"),
    ]
    assert context.intermediate_responses_sent == 2


def test_streaming_without_a_sink_says_why() -> None:
    context = make_context({})
    with pytest.raises(RuntimeError, match="no intermediate response sink"):
        send_intermediate_predict_response(["x"], {0: "r0"}, "msg", 200, context)
