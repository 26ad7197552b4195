"""gRPC ports in the server's life: one turned off is not bound (and with both off grpcio is not
loaded), SIGTERM lets a gRPC call in flight finish before the server exits 0, and a model that
failed to load is UNAVAILABLE."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from marserve.grpc.torchserve import inference_pb2, inference_pb2_grpc
from support.grpc_model import steer, steered_model_dir
from support.serving import RunningServer, start_server, stop_server


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


@pytest.mark.parametrize("off", ["off", "0"])
def test_a_port_turned_off_is_not_bound_and_sigterm_drains_grpc(tmp_path: Path, off: str) -> None:
    model = steered_model_dir(tmp_path / "steered", name="steered", batchSize=1)
    server = start_server(
        tmp_path,
        model_args=[f"steered={model}"],
        extra_args=["--grpc-management-port", off, "--grace-period-seconds", "10"],
    )
    try:
        assert listening(server.grpc_inference)
        assert not listening(server.grpc_management)
        assert "grpc-management" not in server.log()
        with grpc.insecure_channel(server.grpc_inference) as channel:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            in_flight = stub.Predictions.future(
                inference_pb2.PredictionsRequest(model_name="steered", input=steer(sleep=1)),
                timeout=20,
            )
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            assert json.loads(in_flight.result().prediction)["echo"] == {"sleep": 1}
        assert server.process.wait(timeout=20) == 0
    finally:
        stop_server(server)


BROKEN_HANDLER = """
class Broken:
    def initialize(self, context):
        raise RuntimeError("bad weights")

    def handle(self, data, context):
        return data
"""


def wait_until_failed(server: RunningServer, model: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # the management port may not listen yet
            url = f"{server.management}/models/{model}"
            with urllib.request.urlopen(url, timeout=5) as answer:
                if json.loads(answer.read())[0]["failure"]:
                    return
        time.sleep(0.2)
    raise AssertionError(server.log())


def test_a_model_that_failed_to_load_is_unavailable(tmp_path: Path) -> None:
    model = steered_model_dir(tmp_path / "broken", name="broken", batchSize=1)
    (model / "handler.py").write_text(BROKEN_HANDLER)
    server = start_server(tmp_path, model_args=[f"broken={model}"], wait_ready=False)
    try:
        wait_until_failed(server, "broken")
        with grpc.insecure_channel(server.grpc_inference) as channel:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            request = inference_pb2.PredictionsRequest(model_name="broken", input=steer())
            with pytest.raises(grpc.RpcError) as error:
                stub.Predictions(request, timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "bad weights" in error.value.details()
    finally:
        stop_server(server)


def test_with_both_ports_off_grpc_is_not_even_imported() -> None:
    """Pods that serve no gRPC (the operator's default) spare grpcio's start-up and memory."""
    code = (
        "import sys\n"
        "from marserve.server.app import Server\n"
        "from marserve.server.config import ServerConfig\n"
        "config = ServerConfig(grpc_inference_port=0, grpc_management_port=0)\n"
        "assert Server(config, [])._grpc_listeners() == {}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"
