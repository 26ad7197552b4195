"""The committed gRPC stubs are what scripts/generate_grpc.py writes from the .proto files, and
those declare TorchServe's wire format: a .proto edited without `make grpc`, or a field renamed
or renumbered, fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from marserve.grpc.torchserve import inference_pb2, management_pb2
from support import tools

GENERATOR = tools.REPO_ROOT / "scripts" / "generate_grpc.py"
WORKER = tools.REPO_ROOT / "worker"


def test_the_committed_stubs_are_what_protoc_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, GENERATOR, "--out", tmp_path],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(WORKER) for p in WORKER.rglob("*_pb2*.py*"))
    assert generated == committed
    drifted = [
        str(p) for p in generated if (tmp_path / p).read_bytes() != (WORKER / p).read_bytes()
    ]
    assert drifted == [], f"{drifted} differ from their .proto: run `make grpc`"


def fields(message: type) -> list[tuple[str, int]]:
    return [(f.name, f.number) for f in message.DESCRIPTOR.fields]  # type: ignore[attr-defined]


def test_the_inference_service_is_torchserves() -> None:
    service = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
    assert service.full_name == "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    assert [(m.name, m.client_streaming, m.server_streaming) for m in service.methods] == [
        ("Ping", False, False),
        ("Predictions", False, False),
        ("StreamPredictions", False, True),
        ("StreamPredictions2", True, True),
    ]
    assert fields(inference_pb2.PredictionsRequest) == [
        ("model_name", 1), ("model_version", 2), ("input", 3), ("sequenceId", 4)
    ]  # fmt: skip
    assert fields(inference_pb2.PredictionResponse) == [
        ("prediction", 1), ("sequenceId", 2), ("status", 3)
    ]  # fmt: skip
    assert fields(inference_pb2.TorchServeHealthResponse) == [("health", 1)]


def test_the_management_service_is_torchserves() -> None:
    service = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"]
    assert service.full_name == "org.pytorch.serve.grpc.management.ManagementAPIsService"
    assert [m.name for m in service.methods] == [
        "DescribeModel", "ListModels", "RegisterModel", "ScaleWorker", "SetDefault",
        "UnregisterModel",
    ]  # fmt: skip
    assert fields(management_pb2.ManagementResponse) == [("msg", 1)]
    assert fields(management_pb2.DescribeModelRequest) == [
        ("model_name", 1), ("model_version", 2), ("customized", 3)
    ]  # fmt: skip
    assert [number for _, number in fields(management_pb2.RegisterModelRequest)] == list(
        range(1, 12)
    )
