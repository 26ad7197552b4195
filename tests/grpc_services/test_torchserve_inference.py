"""TorchServe's gRPC inference API against a real server, called by grpcio's client with stubs
generated from marserve's .proto: answers, status codes, deadlines, auth and streaming."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from marserve.grpc.torchserve import inference_pb2
from support.grpc_model import TOKEN, steer
from support.serving import RunningServer


def request(**fields: Any) -> inference_pb2.PredictionsRequest:
    return inference_pb2.PredictionsRequest(**fields)


def metric(server: RunningServer, line_start: str) -> float:
    """The value of the first /metrics sample whose line starts with `line_start` (0 if none)."""
    with urllib.request.urlopen(f"{server.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_ping_answers_the_ping_body_without_a_token(inference: Any) -> None:
    answer = inference.Ping(empty_pb2.Empty(), timeout=5)
    assert json.loads(answer.health) == {"status": "Healthy"}


def test_predictions_with_json_input_and_version(inference: Any, auth: Any) -> None:
    answer, call = inference.Predictions.with_call(
        request(model_name="steered", model_version="2.0", input=steer(value=[1, 2])),
        metadata=(*auth, ("x-request-id", "grpc-call-1")),
        timeout=10,
    )
    body = json.loads(answer.prediction)
    assert body == {"echo": {"value": [1, 2]}, "sequence": None, "inputs": ["data"]}
    assert ("x-request-id", "grpc-call-1") in call.trailing_metadata()


def test_predictions_with_raw_bytes_inputs(inference: Any, auth: Any) -> None:
    image = bytes(range(256)) * 3
    answer = inference.Predictions(
        request(model_name="steered", input={"data": image, "extra": b"\x00\xff"}),
        metadata=auth,
        timeout=10,
    )
    assert json.loads(answer.prediction) == {"data": len(image), "extra": 2}


def test_every_call_gets_a_request_id(inference: Any, auth: Any) -> None:
    _, call = inference.Predictions.with_call(
        request(model_name="steered", input=steer()), metadata=auth, timeout=10
    )
    (request_id,) = [value for key, value in call.trailing_metadata() if key == "x-request-id"]
    assert len(request_id) == 32


@pytest.mark.parametrize(
    ("name", "version"), [("nope", ""), ("steered", "9.9")], ids=["model", "version"]
)
def test_unknown_model_or_version_is_not_found(
    inference: Any, auth: Any, name: str, version: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(
            request(model_name=name, model_version=version, input=steer()),
            metadata=auth,
            timeout=10,
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details().startswith(("Model not found", "Model version"))


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", "grpc-token"),)],
    ids=["none", "wrong", "not-bearer"],
)
def test_calls_without_the_token_are_unauthenticated(inference: Any, metadata: Any) -> None:
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(
            request(model_name="steered", input=steer()), metadata=metadata, timeout=10
        )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in error.value.details()


def test_a_failing_handler_is_internal_with_its_message(inference: Any, auth: Any) -> None:
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(
            request(model_name="steered", input=steer(fail=True)), metadata=auth, timeout=10
        )
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert "Prediction failed" in error.value.details()


def test_a_full_queue_is_resource_exhausted(inference: Any, auth: Any) -> None:
    """One worker busy, one request queued (jobQueueSize 1): the next is refused at once."""
    busy = inference.Predictions.future(
        request(model_name="steered", input=steer(sleep=1.5)), metadata=auth, timeout=20
    )
    time.sleep(0.5)  # the first is on the worker
    queued = inference.Predictions.future(
        request(model_name="steered", input=steer()), metadata=auth, timeout=20
    )
    time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(
            request(model_name="steered", input=steer()), metadata=auth, timeout=10
        )
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests queued" in error.value.details()
    assert json.loads(busy.result().prediction)["echo"] == {"sleep": 1.5}
    assert json.loads(queued.result().prediction)["echo"] == {}


def test_a_client_deadline_bounds_the_request(
    server: RunningServer, inference: Any, auth: Any
) -> None:
    """The client's 0.5 s deadline, shorter than the model's 5 s, ends the call; the server
    answers it (counted as a 5xx) rather than holding it to the model's timeout."""
    before = metric(server, "Requests5XX{")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(
            request(model_name="steered", input=steer(sleep=1.5)), metadata=auth, timeout=0.5
        )
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.4
    time.sleep(1.5)  # the worker finishes the abandoned request
    assert metric(server, "Requests5XX{") == before + 1


def test_calls_are_counted_in_the_request_metrics(
    server: RunningServer, inference: Any, auth: Any
) -> None:
    """Per-model counters count a gRPC prediction; TorchServe's Requests4XX counts a refused
    call (scrapes, which are 2xx themselves, leave 4xx alone)."""
    ok = 'marserve_requests_total{code="200",model="steered",version="2.0"}'
    before = (metric(server, ok), metric(server, "Requests4XX{"))
    inference.Predictions(request(model_name="steered", input=steer()), metadata=auth, timeout=10)
    with pytest.raises(grpc.RpcError):
        inference.Predictions(request(model_name="steered", input=steer()), timeout=10)
    assert (metric(server, ok), metric(server, "Requests4XX{")) == (before[0] + 1, before[1] + 1)


def test_stream_predictions_sends_each_chunk(inference: Any, auth: Any) -> None:
    answers = list(
        inference.StreamPredictions(
            request(model_name="steered", input=steer(stream=3)), metadata=auth, timeout=10
        )
    )
    chunks = [answer.prediction for answer in answers]
    assert chunks[:3] == [b"part0 ", b"part1 ", b"part2 "]
    assert json.loads(chunks[3])["echo"] == {"stream": 3}
    assert len(chunks) == 4


def test_predictions_joins_a_streamed_answer(inference: Any, auth: Any) -> None:
    answer = inference.Predictions(
        request(model_name="steered", input=steer(stream=2)), metadata=auth, timeout=10
    )
    assert answer.prediction.startswith(b"part0 part1 {")


def test_stream_predictions2_answers_a_sequence_in_order(inference: Any, auth: Any) -> None:
    """Each request's answers carry its sequenceId (which the handler sees as TorchServe's
    header); a bad request is answered with a status and the stream goes on."""
    requests = [
        request(model_name="steered", input=steer(step=1), sequenceId="seq-a"),
        request(model_name="steered", input=steer(step=2, stream=1), sequenceId="seq-a"),
        request(model_name="steered", input=steer(step=3)),
        request(model_name="nope", input=steer(), sequenceId="seq-a"),
        request(model_name="steered", input=steer(step=4), sequenceId="seq-a"),
    ]
    answers = list(inference.StreamPredictions2(iter(requests), metadata=auth, timeout=20))
    assert len(answers) == 6
    first, chunk, second, missing, unknown, last = answers
    assert json.loads(first.prediction) == {
        "echo": {"step": 1}, "sequence": "seq-a", "inputs": ["data"]
    }  # fmt: skip
    assert (chunk.prediction, chunk.sequenceId) == (b"part0 ", "seq-a")
    assert json.loads(second.prediction)["echo"] == {"step": 2, "stream": 1}
    assert missing.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "sequenceId" in missing.status.message
    assert (unknown.sequenceId, unknown.status.code) == (
        "seq-a",
        grpc.StatusCode.NOT_FOUND.value[0],
    )
    assert json.loads(last.prediction)["echo"] == {"step": 4}
    assert not last.HasField("status")


def test_http_chunked_streaming_still_works(server: RunningServer) -> None:
    """The same streaming handler over HTTP: chunked, the chunks in order. (Over HTTP the
    steering input `data` comes as a form field.)"""
    form = urllib.parse.urlencode({"data": json.dumps({"stream": 2})}).encode()
    http = urllib.request.Request(
        f"{server.inference}/predictions/steered",
        data=form,
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(http, timeout=10) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.read().startswith(b"part0 part1 {")
