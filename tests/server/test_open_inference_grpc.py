"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService` on the gRPC inference
port) against a real `marserve serve`, driven by tritonclient.grpc as a Triton or KServe user
drives it, and by raw messages where a client would never send them: health, metadata, raw and
typed tensors, named outputs, parameters, streaming, the status of every error, and hostile
tensors answered INVALID_ARGUMENT without the server allocating what they declare.

marserve's own stubs are never imported here: they and tritonclient's declare the same symbols
(package `inference`), which one protobuf descriptor pool cannot hold twice. That the two agree
field by field is checked in a separate process by test_grpc_stubs.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from support import models
from support.oip_echo import ECHO_SIGNATURE, ROW, echo_dir

README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN = "oip-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
SAMPLES = {
    "FP32": np.array([[0.5, -1.0], [2.0, 3.25]], dtype=np.float32),
    "INT64": np.array([-(2**62), 7, 2**62], dtype=np.int64),
    "BYTES": np.array([b"alpha", b"", "\u00fc".encode()], dtype=np.object_),
    "FP16": np.array([1.5, -0.25, 65504.0], dtype=np.float16),
}


@pytest.fixture(scope="module")
def server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    """`mlp` (tensors to its handler), `echo` (the body) and `slow` (a 1 s deadline and a queue
    of 2); token auth on."""
    signature = {"openInferenceProtocol": server_kit.mlp_signature}
    mlp = server_kit.scripted_model_dir(own_tmp / "mlp", name="mlp", yaml_config=signature)
    echo = echo_dir(own_tmp / "echo", openInferenceProtocol=ECHO_SIGNATURE)
    slow = echo_dir(own_tmp / "slow", batchSize=1, responseTimeout=1, jobQueueSize=2)
    token_file = own_tmp / "token"
    token_file.write_text(TOKEN + "\n")
    running = server_kit.start_server(
        own_tmp,
        model_args=[f"mlp={mlp}", f"echo={echo}", f"slow={slow}"],
        extra_args=["--token-file", str(token_file)],
        env={"MARSERVE_WORKER_GRACE_SECONDS": "0.5"},
    )
    yield running
    server_kit.stop_server(running)


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.grpc_inference) as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(server: Any) -> Iterator[Any]:
    """The service as grpcio's own client sees it, for requests tritonclient never makes."""
    with grpc.insecure_channel(server.grpc_inference) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def tensor(name: str, array: np.ndarray, *, datatype: str) -> triton.InferInput:
    infer_input = triton.InferInput(name, list(array.shape), datatype)
    infer_input.set_data_from_numpy(array)
    return infer_input


def raises(call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call(*args, **kwargs)
    return raised.value


def test_health_needs_no_token_and_model_readiness_does(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp", headers=AUTH)
    assert client.is_model_ready("echo", model_version="2.0", headers=AUTH)
    assert raises(client.is_model_ready, "nope", headers=AUTH).status() == "StatusCode.NOT_FOUND"
    unauthenticated = raises(client.is_model_ready, "mlp")
    assert unauthenticated.status() == "StatusCode.UNAUTHENTICATED"


def test_server_and_model_metadata_match_rest(client: triton.InferenceServerClient) -> None:
    server = client.get_server_metadata(headers=AUTH, as_json=True)
    assert server["name"] == "marserve"
    assert server["extensions"] == ["binary_tensor_data", "parameters"]
    mlp = client.get_model_metadata("mlp", headers=AUTH, as_json=True)
    assert mlp == {
        "name": "mlp",
        "versions": ["1.0"],
        "platform": "pytorch_eager",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "8"]}],
        "outputs": [{"name": "output-0", "datatype": "FP64", "shape": ["-1", "4"]}],
    }  # int64 shapes are strings in protobuf's JSON
    missing = raises(client.get_model_metadata, "nope", headers=AUTH)
    assert missing.status() == "StatusCode.NOT_FOUND" and "nope" in missing.message()


def test_the_mlp_answers_like_the_model_run_directly(client: triton.InferenceServerClient) -> None:
    rows = np.array([ROW, ROW[::-1]], dtype=np.float32)
    result = client.infer("mlp", [tensor("x", rows, datatype="FP32")], headers=AUTH)
    with torch.no_grad():
        expected = models.make_mlp()(torch.tensor(rows)).numpy()
    np.testing.assert_allclose(result.as_numpy("output-0"), expected, rtol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("mlp", "1.0")


def test_raw_tensors_of_every_kind_travel_both_ways(client: triton.InferenceServerClient) -> None:
    inputs = [tensor(f"t{i}", array, datatype=datatype)
              for i, (datatype, array) in enumerate(SAMPLES.items())]  # fmt: skip
    result = client.infer("echo", inputs, request_id="r-7", headers=AUTH)
    for i, array in enumerate(SAMPLES.values()):
        got = result.as_numpy(f"echo_t{i}")
        assert got.dtype == array.dtype and got.shape == array.shape
        assert got.tolist() == array.tolist()
    assert result.get_response().id == "r-7"


def test_only_the_named_outputs_come_back(client: triton.InferenceServerClient) -> None:
    inputs = [tensor(name, SAMPLES["FP32"], datatype="FP32") for name in "abc"]
    named = [triton.InferRequestedOutput("echo_c"), triton.InferRequestedOutput("echo_a")]
    result = client.infer("echo", inputs, outputs=named, headers=AUTH)
    assert [o.name for o in result.get_response().outputs] == ["echo_c", "echo_a"]
    assert result.as_numpy("echo_a").tolist() == SAMPLES["FP32"].tolist()
    assert result.as_numpy("echo_b") is None
    wrong = raises(client.infer, "echo", inputs, outputs=[triton.InferRequestedOutput("z")],
                   headers=AUTH)  # fmt: skip
    assert wrong.status() == "StatusCode.INVALID_ARGUMENT" and "'z'" in wrong.message()


def test_request_parameters_reach_the_handler_and_its_parameters_come_back(
    client: triton.InferenceServerClient,
) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32")]
    parameters = {"tag": "blue", "level": 3, "on": True, "ratio": 0.5}
    result = client.infer("echo", inputs, parameters=parameters, headers=AUTH)
    seen = result.get_response().parameters["seen"].string_param
    assert json.loads(seen) == parameters


def contents_request(**tensor_fields: Any) -> Any:
    return service_pb2.ModelInferRequest(
        model_name="echo", inputs=[service_pb2.ModelInferRequest.InferInputTensor(**tensor_fields)]
    )


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("FP32", "fp32_contents", [0.5, -2.0, 4.25]),
        ("INT64", "int64_contents", [-(2**62), 0, 2**62]),
        ("INT8", "int_contents", [-128, 0, 127]),
        ("BOOL", "bool_contents", [True, False, True]),
        ("BYTES", "bytes_contents", [b"alpha", b"", b"\xc3\xbc"]),
    ],
)
def test_typed_contents_are_read_as_raw_ones_are(
    stub: Any, datatype: str, field: str, values: list[Any]
) -> None:
    request = contents_request(
        name="a", datatype=datatype, shape=[3],
        contents=service_pb2.InferTensorContents(**{field: values}),
    )  # fmt: skip
    response = stub.ModelInfer(request, metadata=tuple(AUTH.items()), timeout=10)
    assert response.id == ""  # the echo handler answers the request's id, null here
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("echo_a", datatype, [3])
    (raw,) = response.raw_output_contents
    if datatype == "BYTES":
        assert raw == b"".join(len(v).to_bytes(4, "little") + v for v in values)
    else:
        assert np.frombuffer(raw, dtype=np.dtype(SAMPLE_TYPES[datatype])).tolist() == values


SAMPLE_TYPES = {"FP32": "<f4", "INT64": "<i8", "INT8": "<i1", "BOOL": "?"}


def test_stream_infer_answers_each_request_and_each_chunk_and_reports_errors(
    client: triton.InferenceServerClient,
) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=AUTH)
    try:
        inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32")]
        client.async_stream_infer("echo", inputs, request_id="s1", parameters={"stream": 2})
        client.async_stream_infer("nope", inputs, request_id="s2")
        client.async_stream_infer("echo", inputs, request_id="s3")
        got = [answers.get(timeout=20) for _ in range(5)]
    finally:
        client.stop_stream()
    chunks = [result.as_numpy("output-0").tolist() for result, _ in got[:2]]
    assert chunks == [[b"part"], [b"part"]]
    assert got[2][0].as_numpy("echo_a").tolist() == SAMPLES["FP32"].tolist()
    assert got[3][0] is None and "Model not found: nope" in str(got[3][1])
    assert got[4][0].get_response().id == "s3"


def test_a_streamed_answer_is_refused_by_model_infer(client: triton.InferenceServerClient) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32")]
    refused = raises(client.infer, "echo", inputs, parameters={"stream": 2}, headers=AUTH)
    assert refused.status() == "StatusCode.UNIMPLEMENTED"
    assert refused.message().endswith(
        "call the Open Inference Protocol's ModelStreamInfer to receive the stream"
    )


def test_the_models_deadline_and_the_clients_are_deadline_exceeded(
    client: triton.InferenceServerClient,
) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32")]
    late = raises(client.infer, "slow", inputs, parameters={"sleep": 2}, headers=AUTH)
    assert late.status() == "StatusCode.DEADLINE_EXCEEDED" and "slow" in late.message()
    impatient = raises(client.infer, "echo", inputs, parameters={"sleep": 1.5},
                       client_timeout=0.5, headers=AUTH)  # fmt: skip
    assert impatient.status() == "StatusCode.DEADLINE_EXCEEDED"


def test_a_full_queue_is_resource_exhausted(client: triton.InferenceServerClient) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32")]
    client.infer("slow", inputs, headers=AUTH)  # answered once earlier tests' work is done
    start = threading.Barrier(4)

    def sleeper() -> Any:
        start.wait()
        return client.infer("slow", inputs, parameters={"sleep": 0.8}, headers=AUTH)

    with ThreadPoolExecutor(3) as pool:
        sleepers = [pool.submit(sleeper) for _ in range(3)]
        start.wait()
        threading.Event().wait(0.3)
        full = raises(client.infer, "slow", inputs, headers=AUTH)
        for done in sleepers:  # the last may pass the model's 1 s deadline: either is fine
            done.exception()
    assert full.status() == "StatusCode.RESOURCE_EXHAUSTED" and "queue" in full.message()


def raw_request(datatype: str, shape: list[int], *raw: bytes, inputs: int = 1) -> Any:
    tensors = [service_pb2.ModelInferRequest.InferInputTensor(
        name=f"a{i}", datatype=datatype, shape=shape) for i in range(inputs)]  # fmt: skip
    return service_pb2.ModelInferRequest(
        model_name="echo", inputs=tensors, raw_input_contents=list(raw)
    )


HOSTILE = [
    ("truncated raw contents", raw_request("FP32", [4], b"\0" * 10), "needs 16 bytes, got 10"),
    ("byte count off", raw_request("INT64", [2], b"\0" * 24), "needs 16 bytes, got 24"),
    ("huge shape", raw_request("FP32", [2**31, 2**31], b"\0" * 4), "bytes, got 4"),
    ("huge BYTES shape", raw_request("BYTES", [2**40], b"\0" * 4), "need at least"),
    ("length past buffer", raw_request("BYTES", [1], b"\xff\0\0\0ab"), "only 2 remain"),
    ("fewer raw than inputs", raw_request("FP32", [1], b"\0" * 4, inputs=2), "1 entries for 2"),
    ("more raw than inputs", raw_request("FP32", [1], b"\0" * 4, b"\0" * 4), "2 entries for 1"),
    ("negative dim", raw_request("FP32", [-4], b"\0" * 16), "non-negative"),
    ("unknown datatype", raw_request("FP8", [1], b"\0"), "'FP8' is not one of"),
    ("FP16 as contents", contents_request(name="a", datatype="FP16", shape=[1]), "raw_input"),
    ("wrong contents field", contents_request(
        name="a", datatype="FP32", shape=[1],
        contents=service_pb2.InferTensorContents(int_contents=[1])), "not int_contents"),
    ("contents and raw", service_pb2.ModelInferRequest(
        model_name="echo", raw_input_contents=[b"\0" * 4],
        inputs=[service_pb2.ModelInferRequest.InferInputTensor(
            name="a", datatype="INT32", shape=[1],
            contents=service_pb2.InferTensorContents(int_contents=[1]))]), "both"),
    ("huge shape, few contents", contents_request(
        name="a", datatype="FP32", shape=[2**40],
        contents=service_pb2.InferTensorContents(fp32_contents=[1.0])), "data has 1"),
    ("no inputs", service_pb2.ModelInferRequest(model_name="echo"), "at least one"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "request_", "reason"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_tensors_are_invalid_argument_and_the_server_stays_up(
    stub: Any, client: triton.InferenceServerClient, case: str, request_: Any, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request_, metadata=tuple(AUTH.items()), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert reason in error.value.details(), case
    assert client.is_server_ready()


def test_the_readmes_tritonclient_grpc_example_runs(server: Any) -> None:
    readme = README.read_text()
    section = readme[readme.index("### Open Inference Protocol over gRPC") :]
    example = re.search(r"```python\n(?P<code>.*?)```", section, re.S)
    assert example, "the README's Open Inference Protocol gRPC section has no Python example"
    code = example["code"].replace("localhost:7070", server.grpc_inference)
    code = code.replace("my-token", TOKEN)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().strip() == "(1, 4)"
