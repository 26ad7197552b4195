"""The Open Inference Protocol over real HTTP, driven by tritonclient as a Triton or KServe user
drives it: health, metadata, JSON and binary tensors, named outputs, parameters, and errors that
the client raises with marserve's message."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support import models
from support.oip_echo import ECHO_SIGNATURE, ROW, echo_dir

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    """`mlp` (tensors to its handler), `plain` (the same handler, given the body), `echo` and
    `slow` (a 1 s deadline and a queue of 2)."""
    signature = {"openInferenceProtocol": server_kit.mlp_signature}
    mlp = server_kit.scripted_model_dir(own_tmp / "mlp", name="mlp", yaml_config=signature)
    plain = server_kit.scripted_model_dir(own_tmp / "plain", name="plain")
    echo = echo_dir(own_tmp / "echo", openInferenceProtocol=ECHO_SIGNATURE)
    slow = echo_dir(own_tmp / "slow", batchSize=1, responseTimeout=1, jobQueueSize=2)
    running = server_kit.start_server(
        own_tmp,
        model_args=[f"mlp={mlp}", f"plain={plain}", f"echo={echo}", f"slow={slow}"],
        env={"MARSERVE_WORKER_GRACE_SECONDS": "0.5"},
    )
    yield running
    server_kit.stop_server(running)


@pytest.fixture
def client(server: Any) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.inference.removeprefix("http://")) as opened:
        yield opened


def tensor(name: str, array: np.ndarray, *, datatype: str, binary: bool) -> triton.InferInput:
    infer_input = triton.InferInput(name, list(array.shape), datatype)
    infer_input.set_data_from_numpy(array, binary_data=binary)
    return infer_input


def test_health_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("echo", model_version="2.0")
    assert not client.is_model_ready("nope")


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    server = client.get_server_metadata()
    assert server["name"] == "marserve"
    assert {"binary_tensor_data", "parameters"} <= set(server["extensions"])
    mlp = client.get_model_metadata("mlp")
    assert mlp["platform"] == "pytorch_eager" and mlp["versions"] == ["1.0"]
    assert mlp["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert mlp["outputs"] == [{"name": "output-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert client.get_model_metadata("echo")["platform"] == "pytorch_torchserve"


@pytest.mark.parametrize(("binary", "compression"), [(True, None), (False, None), (True, "gzip")])
def test_the_mlp_answers_like_the_model_run_directly(
    client: triton.InferenceServerClient, binary: bool, compression: str | None
) -> None:
    rows = np.array([ROW, ROW[::-1]], dtype=np.float32)
    result = client.infer(
        "mlp",
        [tensor("x", rows, datatype="FP32", binary=binary)],
        outputs=[triton.InferRequestedOutput("output-0", binary_data=binary)],
        request_compression_algorithm=compression,
    )
    with torch.no_grad():
        expected = models.make_mlp()(torch.tensor(rows)).numpy()
    np.testing.assert_allclose(result.as_numpy("output-0"), expected, rtol=1e-6)


def test_a_handler_given_the_body_answers_a_triton_client_as_output_0(
    client: triton.InferenceServerClient,
) -> None:
    """The scripted handler gets the request document (a dict) and answers a dict, which a
    client asking for binary outputs receives as one BYTES element of JSON."""
    result = client.infer("plain", [tensor("x", np.ones((1, 8), np.float32), datatype="FP32",
                                           binary=True)])  # fmt: skip
    (answer,) = result.as_numpy("output-0").tolist()
    assert json.loads(answer)["batch"] == 1


SAMPLES = {
    "FP32": np.array([[0.5, -1.0], [2.0, 3.25]], dtype=np.float32),
    "INT64": np.array([-(2**62), 7, 2**62], dtype=np.int64),
    "BYTES": np.array([b"alpha", b"", "\u00fc".encode()], dtype=np.object_),
    "FP16": np.array([1.5, -0.25, 65504.0], dtype=np.float16),
}


@pytest.mark.parametrize(("binary_in", "binary_out"), [(True, True), (False, False), (True, False)])
def test_tensors_of_every_kind_travel_both_ways(
    client: triton.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    inputs = [tensor(f"t{i}", array, datatype=datatype, binary=binary_in)
              for i, (datatype, array) in enumerate(SAMPLES.items())]  # fmt: skip
    outputs = [triton.InferRequestedOutput(f"echo_t{i}", binary_data=binary_out)
               for i in range(len(SAMPLES))]  # fmt: skip
    result = client.infer("echo", inputs, outputs=outputs, request_id="r-7")
    for i, array in enumerate(SAMPLES.values()):
        got = result.as_numpy(f"echo_t{i}")
        assert got.shape == array.shape and _values(got) == array.tolist()
    assert result.get_response()["id"] == "r-7"


def _values(array: np.ndarray) -> list[Any]:
    """Elements as lists; BYTES as bytes (tritonclient gives JSON BYTES data back as text)."""
    values: list[Any] = array.tolist()
    return [v.encode() if isinstance(v, str) else v for v in values]


def test_only_the_named_outputs_come_back(client: triton.InferenceServerClient) -> None:
    inputs = [tensor(name, SAMPLES["FP32"], datatype="FP32", binary=True) for name in "abc"]
    result = client.infer("echo", inputs, outputs=[triton.InferRequestedOutput("echo_b")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["echo_b"]
    assert result.as_numpy("echo_b").tolist() == SAMPLES["FP32"].tolist()
    assert result.get_output("echo_a") is None
    everything = client.infer("echo", inputs)  # no outputs named: all, in binary
    assert [o["name"] for o in everything.get_response()["outputs"]] == [
        "echo_a", "echo_b", "echo_c"]  # fmt: skip


def test_request_parameters_reach_the_handler_and_its_parameters_come_back(
    client: triton.InferenceServerClient,
) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32", binary=False)]
    result = client.infer("echo", inputs, parameters={"tag": "blue", "level": 3})
    seen = json.loads(result.get_response()["parameters"]["seen"])
    assert seen["tag"] == "blue" and seen["level"] == 3


def raises(call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call(*args, **kwargs)
    return raised.value


def test_errors_reach_the_client_with_their_message(client: triton.InferenceServerClient) -> None:
    x = tensor("x", np.zeros((1, 8), dtype=np.float32), datatype="FP32", binary=True)
    unknown = raises(client.infer, "nope", [x])
    assert unknown.status() == "404" and "Model not found: nope" in unknown.message()
    x.set_shape([3, 8])
    wrong = raises(client.infer, "mlp", [x])
    assert wrong.status() == "400"
    assert wrong.message() == "input 'x': shape [3, 8] of FP32 needs 96 bytes, got 32"
    metadata = raises(client.get_model_metadata, "nope")
    assert metadata.status() == "404"


def test_deadline_gives_504_to_the_client(client: triton.InferenceServerClient) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32", binary=True)]
    late = raises(client.infer, "slow", inputs, parameters={"sleep": 2})
    assert late.status() == "504" and "slow" in late.message()


def test_a_streamed_answer_is_refused_not_cut_to_its_first_chunk(
    client: triton.InferenceServerClient,
) -> None:
    inputs = [tensor("a", SAMPLES["FP32"], datatype="FP32", binary=False)]
    streamed = raises(client.infer, "echo", inputs, parameters={"stream": 2})
    assert streamed.status() == "501"
    assert "call POST /predictions/echo" in streamed.message()


async def test_kserve_v1_refuses_a_streamed_answer_too(server: Any) -> None:
    instance = {"inputs": [], "parameters": {"stream": 2}}
    url = f"{server.inference}/v1/models/echo:predict"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"instances": [instance]}) as response,
    ):
        assert response.status == 501
        body = await response.json()
    assert body["type"] == "StreamingNotSupported" and "KServe v1" in body["message"]


async def test_full_queue_gives_429_in_the_protocols_body(server: Any) -> None:
    url = f"{server.inference}/v2/models/slow/infer"
    document = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    async with aiohttp.ClientSession() as session:

        async def post(**extra: Any) -> tuple[int, Any, str | None]:
            async with session.post(url, json={**document, **extra}) as response:
                return response.status, await response.json(), response.headers.get("Retry-After")

        sleepers = [asyncio.create_task(post(parameters={"sleep": 0.8})) for _ in range(3)]
        await asyncio.sleep(0.3)
        status, body, retry_after = await post()
        await asyncio.gather(*sleepers)
    assert status == 429 and retry_after
    assert list(body) == ["error"] and "queue" in body["error"]


async def test_a_json_request_to_a_handler_without_tensors_gets_its_answer_as_is(
    server: Any,
) -> None:
    document = {"id": "q", "inputs": [{"name": "a", "datatype": "INT8", "shape": [2],
                                       "data": [[1], [2]]}]}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.inference}/v2/models/echo/infer", json=document) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    assert answer["outputs"] == [
        {"name": "echo_a", "datatype": "INT8", "shape": [2], "data": [[1], [2]]}
    ]


def _one_input(shape: Any, size: int, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "a", "datatype": datatype, "shape": shape,
                        "parameters": {"binary_data_size": size}}]}  # fmt: skip


# (case, JSON header, binary tail, Inference-Header-Content-Length or None for the true one)
HOSTILE = [
    ("not a number", _one_input([1], 4), b"\0" * 4, "abc"),
    ("header past the body", _one_input([1], 4), b"\0" * 4, "999"),
    ("header cut mid-JSON", _one_input([1], 4), b"\0" * 4, "10"),
    ("truncated tensor", _one_input([2], 8), b"\0" * 5, None),
    ("wrong byte count", _one_input([2], 5), b"\0" * 5, None),
    ("huge shape", _one_input([2**31, 2**31], 4), b"\0" * 4, None),
    ("negative dim", _one_input([-4], 16), b"\0" * 16, None),
    ("unknown datatype", _one_input([1], 4, "FP8"), b"\0" * 4, None),
    ("bytes past the buffer", _one_input([1], 6, "BYTES"), b"\xff\0\0\0ab", None),
]


@pytest.mark.parametrize(("case", "header", "tail", "length"), HOSTILE, ids=[c[0] for c in HOSTILE])
async def test_hostile_binary_requests_get_a_400_in_the_protocols_body(
    server: Any, case: str, header: dict[str, Any], tail: bytes, length: str | None
) -> None:
    encoded = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": length or str(len(encoded)),
               "Content-Type": "application/octet-stream"}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.inference}/v2/models/echo/infer", data=encoded + tail, headers=headers
        ) as response:
            assert response.status == 400, case
            error = await response.json()
        assert list(error) == ["error"] and error["error"], case
        async with session.get(f"{server.inference}/v2/health/ready") as response:
            assert response.status == 200


def test_the_readmes_tritonclient_example_runs(server: Any) -> None:
    readme = README.read_text()
    section = readme[readme.index("### Open Inference Protocol") :]
    example = re.search(r"```python\n(?P<code>.*?)```", section, re.S)
    assert example, "the README's Open Inference Protocol section has no Python example"
    code = example["code"].replace("localhost:8080", server.inference.removeprefix("http://"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().strip() == "(1, 4)"


async def test_a_failing_handler_answers_in_the_protocols_body(server: Any) -> None:
    document = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1.0]}],
                "poison": True}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.inference}/v2/models/plain/infer", json=document) as response,
    ):
        assert response.status >= 500
        body = await response.json()
    assert list(body) == ["error"] and body["error"]
