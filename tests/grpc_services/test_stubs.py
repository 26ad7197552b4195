"""The committed gRPC stubs are what scripts/generate_grpc.py writes from the .proto files, and
those declare TorchServe's and the Open Inference Protocol's wire formats: a .proto edited
without `make grpc`, or a field renamed or renumbered, fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# Prints every message of the Open Inference Protocol's stubs as {message: [(field, number,
# type, repeated, message type)]} and the service's methods; run once with marserve's stubs and
# once with tritonclient's, each in its own process (one descriptor pool cannot hold both).
DESCRIBE = """
import json, sys
from importlib import import_module
module = import_module(sys.argv[1])
service = module.DESCRIPTOR.services_by_name["GRPCInferenceService"]
messages = {}
def describe(message):
    messages[message.full_name] = [
        (f.name, f.number, f.type, f.is_repeated,
         f.message_type.full_name if f.message_type else "")
        for f in message.fields
    ]
    for nested in message.nested_types:
        describe(nested)
for method in service.methods:
    describe(method.input_type)
    describe(method.output_type)
methods = {m.full_name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming,
                         m.server_streaming] for m in service.methods}
print(json.dumps({"methods": methods, "messages": messages}))
"""


def describe(module: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", DESCRIBE, module],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    described: dict[str, Any] = json.loads(done.stdout)
    return described


def test_the_open_inference_service_is_tritons_on_the_wire() -> None:
    """Every RPC marserve declares, and every message they carry (nested ones included), has
    the same name, fields, numbers and types as in the stubs tritonclient.grpc ships."""
    ours = describe("marserve.grpc.oip.grpc_predict_v2_pb2")
    tritons = describe("tritonclient.grpc.service_pb2")
    assert list(ours["methods"]) == [
        f"inference.GRPCInferenceService.{name}"
        for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                     "ModelMetadata", "ModelInfer", "ModelStreamInfer")
    ]  # fmt: skip
    assert {name: tritons["methods"][name] for name in ours["methods"]} == ours["methods"]
    assert {name: tritons["messages"][name] for name in ours["messages"]} == ours["messages"]
