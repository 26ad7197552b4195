"""Hostile gRPC input against a real server: oversized, malformed and unknown-field messages and
empty or missing inputs are refused with a clear status, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from marserve.grpc.torchserve import inference_pb2
from support.grpc_model import MAX_REQUEST_SIZE, steer

PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
STREAM2 = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/StreamPredictions2"


@pytest.fixture(autouse=True)
def still_serving(inference: Any, auth: Any) -> Iterator[None]:
    """After each hostile call, a good one is still answered."""
    yield
    answer = inference.Predictions(
        inference_pb2.PredictionsRequest(model_name="steered", input=steer(after=True)),
        metadata=auth,
        timeout=10,
    )
    assert json.loads(answer.prediction)["echo"] == {"after": True}
    assert json.loads(inference.Ping(empty_pb2.Empty(), timeout=5).health)["status"] == "Healthy"


def raw_predictions(channel: grpc.Channel, body: bytes, auth: Any) -> None:
    """Sends bytes as they are where a PredictionsRequest belongs."""
    call = channel.unary_unary(PREDICTIONS, request_serializer=None, response_deserializer=None)
    call(body, metadata=auth, timeout=10)


def test_a_message_over_the_request_size_limit_is_refused(inference: Any, auth: Any) -> None:
    """grpc refuses it before it is parsed, as HTTP refuses a body over the same limit."""
    big = inference_pb2.PredictionsRequest(
        model_name="steered", input={"data": b"x" * (MAX_REQUEST_SIZE + 1)}
    )
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(big, metadata=auth, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_REQUEST_SIZE) in error.value.details()


def test_bytes_that_are_no_message_are_invalid_argument(
    inference_channel: grpc.Channel, auth: Any
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        raw_predictions(inference_channel, b"\xff\xff\xff\xff", auth)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid org.pytorch.serve.grpc.inference.PredictionsRequest" in (
        error.value.details()
    )


def test_unknown_fields_are_invalid_argument(inference_channel: grpc.Channel, auth: Any) -> None:
    known = inference_pb2.PredictionsRequest(model_name="steered", input=steer())
    field_9_varint = bytes([9 << 3 | 0, 1])
    with pytest.raises(grpc.RpcError) as error:
        raw_predictions(inference_channel, known.SerializeToString() + field_9_varint, auth)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no fields numbered [9]" in error.value.details()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_name": "steered"}, "input is empty"),
        ({"input": {"data": b"{}"}}, "model_name is required"),
    ],
    ids=["empty-input", "no-model"],
)
def test_missing_parts_are_invalid_argument(
    inference: Any, auth: Any, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        inference.Predictions(inference_pb2.PredictionsRequest(**fields), metadata=auth, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_a_malformed_message_in_a_stream_ends_it_cleanly(
    inference_channel: grpc.Channel, auth: Any
) -> None:
    good = inference_pb2.PredictionsRequest(
        model_name="steered", input=steer(step=1), sequenceId="s"
    ).SerializeToString()
    call = inference_channel.stream_stream(
        STREAM2,
        request_serializer=None,
        response_deserializer=inference_pb2.PredictionResponse.FromString,
    )
    answers = call(iter([good, b"\xff\xff"]), metadata=auth, timeout=10)
    first = next(answers)
    assert json.loads(first.prediction)["echo"] == {"step": 1}
    with pytest.raises(grpc.RpcError) as error:
        next(answers)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
