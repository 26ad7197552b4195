"""TorchServe's gRPC management API against a real server: the read-only calls answer the JSON
the HTTP management API answers; the calls that would change the served models are refused."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import grpc
import pytest

from marserve.grpc.torchserve import management_pb2
from support.serving import RunningServer


def without_times(descriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Descriptions less what changes between two calls (queue state, worker start times)."""
    for description in descriptions:
        description.pop("jobQueueStatus")
        for worker in description["workers"]:
            worker.pop("startTime")
    return descriptions


def test_list_models_answers_the_http_listing(
    server: RunningServer, management: Any, auth: Any
) -> None:
    answer = management.ListModels(management_pb2.ListModelsRequest(), metadata=auth, timeout=5)
    assert json.loads(answer.msg) == http_json_with_token(f"{server.management}/models", auth)


@pytest.mark.parametrize("version", ["", "2.0", "all"])
def test_describe_model_answers_the_http_description(
    server: RunningServer, management: Any, auth: Any, version: str
) -> None:
    answer = management.DescribeModel(
        management_pb2.DescribeModelRequest(model_name="steered", model_version=version),
        metadata=auth,
        timeout=5,
    )
    described = json.loads(answer.msg)
    over_http = http_json_with_token(f"{server.management}/models/steered", auth)
    assert without_times(described) == without_times(over_http)
    assert described[0]["modelVersion"] == "2.0"


def test_describing_an_unknown_model_is_not_found(management: Any, auth: Any) -> None:
    with pytest.raises(grpc.RpcError) as error:
        management.DescribeModel(
            management_pb2.DescribeModelRequest(model_name="nope"), metadata=auth, timeout=5
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("RegisterModel", management_pb2.RegisterModelRequest(url="https://x/evil.mar")),
        ("ScaleWorker", management_pb2.ScaleWorkerRequest(model_name="steered", min_worker=4)),
        ("SetDefault", management_pb2.SetDefaultRequest(model_name="steered")),
        ("UnregisterModel", management_pb2.UnregisterModelRequest(model_name="steered")),
    ],
)
def test_calls_that_change_the_models_are_refused(
    server: RunningServer, management: Any, auth: Any, method: str, message: Any
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        getattr(management, method)(message, metadata=auth, timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "pod spec" in error.value.details()
    assert [m["modelName"] for m in http_json_with_token(f"{server.management}/models", auth)[
        "models"
    ]] == ["steered"]  # fmt: skip


def test_management_calls_need_the_token(management: Any) -> None:
    with pytest.raises(grpc.RpcError) as error:
        management.ListModels(management_pb2.ListModelsRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def http_json_with_token(url: str, auth: Any) -> Any:
    ((key, value),) = auth
    request = urllib.request.Request(url, headers={key: value})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())
