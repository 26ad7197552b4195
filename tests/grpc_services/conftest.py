"""Fixtures for gRPC tests: a real `marserve serve` with a handler each request steers, and
channels made by grpcio's own client with the stubs generated from marserve's .proto files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from marserve.grpc.torchserve import (
    inference_pb2_grpc,
    management_pb2_grpc,
)
from support.grpc_model import MAX_REQUEST_SIZE, TOKEN, steered_model_dir
from support.serving import RunningServer, start_server, stop_server


@pytest.fixture(scope="package")
def grpc_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grpc")


@pytest.fixture(scope="package")
def server(grpc_tmp: Path) -> Iterator[RunningServer]:
    """`steered` (one worker, a queue of one, 5 s response timeout), token auth on."""
    steered = steered_model_dir(
        grpc_tmp / "steered", name="steered", batchSize=1, jobQueueSize=1, responseTimeout=5
    )
    token_file = grpc_tmp / "token"
    token_file.write_text(TOKEN + "\n")
    running = start_server(
        grpc_tmp,
        model_args=[f"steered={steered}"],
        extra_args=[
            "--token-file", str(token_file),
            "--max-request-size", str(MAX_REQUEST_SIZE),
        ],
    )  # fmt: skip
    yield running
    stop_server(running)


@pytest.fixture(scope="package")
def inference_channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_inference) as channel:
        yield channel


@pytest.fixture(scope="package")
def inference(inference_channel: grpc.Channel) -> Any:
    return inference_pb2_grpc.InferenceAPIsServiceStub(inference_channel)


@pytest.fixture(scope="package")
def management(server: RunningServer) -> Iterator[Any]:
    with grpc.insecure_channel(server.grpc_management) as channel:
        yield management_pb2_grpc.ManagementAPIsServiceStub(channel)


@pytest.fixture
def auth() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKEN}"),)
