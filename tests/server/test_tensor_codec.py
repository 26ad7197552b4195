"""The tensor codec and the REST documents around it, without a server: every datatype both
ways, and hostile sizes refused before anything of the declared size is allocated."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from marserve import tensor_codec
from marserve.server import tensors
from marserve.server.errors import ServingError
from marserve.tensor_codec import TensorError

SAMPLES: dict[str, Any] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 7, 255],
    "UINT16": [0, 7, 65535],
    "UINT32": [0, 7, 2**32 - 1],
    "UINT64": [0, 7, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-(2**15), 0, 2**15 - 1],
    "INT32": [-(2**31), 0, 2**31 - 1],
    "INT64": [-(2**63), 0, 2**63 - 1],
    "FP16": [0.5, -2.0, 65504.0],
    "BF16": [0.5, -2.0, 1.5],
    "FP32": [0.25, -1.0, 3.5],
    "FP64": [0.1, -1e300, 2.5],
    "BYTES": ["a", "", "ü"],
}


def test_every_datatype_of_the_protocol_is_covered() -> None:
    assert set(SAMPLES) == set(tensor_codec.DATATYPES)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_json_and_raw_round_trip_every_datatype(datatype: str) -> None:
    array = tensor_codec.from_json(SAMPLES[datatype], datatype=datatype, shape=[3])
    raw = tensor_codec.to_raw(array, datatype=datatype)
    again = tensor_codec.from_raw(raw, datatype=datatype, shape=[3])
    assert tensor_codec.to_json(again, datatype=datatype) == SAMPLES[datatype]


def test_raw_data_is_little_endian_and_bytes_items_are_length_prefixed() -> None:
    array = tensor_codec.from_json([1, 256], datatype="INT32", shape=[2])
    assert tensor_codec.to_raw(array, datatype="INT32") == b"\x01\0\0\0\0\x01\0\0"
    items = tensor_codec.from_json(["ab", "c"], datatype="BYTES", shape=[2])
    assert tensor_codec.to_raw(items, datatype="BYTES") == b"\x02\0\0\0ab\x01\0\0\0c"
    assert tensor_codec.to_raw(np.array([1.0], dtype=np.float32), datatype="BF16") == b"\x80\x3f"


def test_numpy_types_name_their_datatype() -> None:
    assert tensor_codec.datatype_of(np.zeros(2, dtype=">f4")) == "FP32"
    assert tensor_codec.datatype_of(np.array(["x"])) == "BYTES"
    with pytest.raises(TensorError, match="complex"):
        tensor_codec.datatype_of(np.zeros(1, dtype=np.complex64))


@pytest.mark.parametrize(
    ("raw", "datatype", "shape", "message"),
    [
        (b"\0" * 7, "FP32", [2], "needs 8 bytes, got 7"),
        (b"\0" * 9, "FP64", [1], "needs 8 bytes, got 9"),
        (b"\0" * 4, "FP32", [2**31, 2**31], "needs 18446744073709551616 bytes"),
        (b"\x05\0\0\0ab", "BYTES", [1], "declares 5 bytes, only 2 remain"),
        (b"\xff\xff\xff\xffab", "BYTES", [1], "declares 4294967295 bytes"),
        (b"\x01\0\0\0a", "BYTES", [2**40], "need at least"),
        (b"\x01\0\0\0a\0", "BYTES", [1], "1 bytes left after 1 BYTES items"),
        (b"\x01\0\0\0a\x01\0\0", "BYTES", [2], "item 1 has no length"),
        (b"\x02", "BOOL", [1], "0 or 1"),
        (b"", "FP32", [-1], "non-negative"),
        (b"", "FP32", "2", "non-negative"),
        (b"", "COMPLEX64", [0], "not one of"),
    ],
)
def test_hostile_raw_tensors_are_refused_without_allocating(
    raw: bytes, datatype: str, shape: Any, message: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(TensorError, match=message):
        tensor_codec.from_raw(raw, datatype=datatype, shape=shape)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"),
    [
        ([1.0], "FP32", [2**31, 2**31], "needs 4611686018427387904 elements, data has 1"),
        ([256], "UINT8", [1], "not a valid UINT8"),
        ([2**63], "INT64", [1], "not a valid INT64"),
        ([True], "INT32", [1], "not a valid INT32"),
        ([1], "BOOL", [1], "not a valid BOOL"),
        ([b"x".hex(), 3], "BYTES", [2], "not a valid BYTES"),
        ("1,2", "FP32", [2], "data must be a list"),
    ],
)
def test_json_data_must_fit_shape_and_datatype(
    data: Any, datatype: str, shape: list[int], message: str
) -> None:
    with pytest.raises(TensorError, match=message):
        tensor_codec.from_json(data, datatype=datatype, shape=shape)


@pytest.mark.parametrize(
    ("header_length", "message"),
    [("abc", "must be a non-negative integer"), ("-1", "non-negative"), ("99", "only 10 bytes")],
)
def test_inference_header_length_must_fit_the_body(header_length: str, message: str) -> None:
    with pytest.raises(ServingError, match=message) as raised:
        tensors.split_body(b"{}" + b"\0" * 8, header_length)
    assert raised.value.status == 400


def binary_request(*tensors_: tuple[str, str, list[int], bytes]) -> tuple[dict[str, Any], bytes]:
    inputs = [
        {"name": name, "datatype": datatype, "shape": shape,
         "parameters": {"binary_data_size": len(raw)}}
        for name, datatype, shape, raw in tensors_
    ]  # fmt: skip
    return {"inputs": inputs}, b"".join(raw for *_, raw in tensors_)


def test_binary_inputs_are_cut_from_the_tail_in_order() -> None:
    payload, tail = binary_request(
        ("a", "INT64", [2], struct.pack("<2q", 5, -6)), ("b", "BYTES", [1], b"\x02\0\0\0hi")
    )
    decoded = tensors.parse_request(payload, tail)
    assert [t.array.tolist() for t in decoded.inputs] == [[5, -6], [b"hi"]]
    document = tensors.json_document(payload, decoded)
    assert [t["data"] for t in document["inputs"]] == [[5, -6], ["hi"]]
    assert "parameters" not in document["inputs"][0]


@pytest.mark.parametrize(
    ("size", "tail", "message"),
    [
        (8, b"\0" * 4, "runs past the body"),
        (4, b"\0" * 8, "4 bytes no input claims"),
        (-8, b"\0" * 8, "binary_data_size must be a non-negative integer"),
        ("8", b"\0" * 8, "binary_data_size must be a non-negative integer"),
    ],
)
def test_binary_sizes_must_match_the_tail(size: Any, tail: bytes, message: str) -> None:
    payload = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1],
                           "parameters": {"binary_data_size": size}}]}  # fmt: skip
    with pytest.raises(ServingError, match=message) as raised:
        tensors.parse_request(payload, tail)
    assert raised.value.status == 400


def test_the_response_returns_named_outputs_in_binary_where_asked() -> None:
    answer = {
        "model_name": "m",
        "outputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
            {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
            {"name": "c", "datatype": "INT8", "shape": [1], "data": [3]},
        ],
    }
    payload = {
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
        "outputs": [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}],
    }
    header, tail = tensors.encode_response(answer, tensors.parse_request(payload, b""))
    described = json.loads(header)
    assert [o["name"] for o in described["outputs"]] == ["b", "a"]
    assert described["outputs"][0]["parameters"] == {"binary_data_size": 6}
    assert "data" not in described["outputs"][0]
    assert described["outputs"][1]["data"] == [1.0, 2.0]
    assert tail == b"\x02\0\0\0hi"
    payload["outputs"] = [{"name": "nope"}]
    with pytest.raises(ServingError, match="no output named 'nope'"):
        tensors.encode_response(answer, tensors.parse_request(payload, b""))


def test_all_outputs_go_binary_when_binary_data_output_is_set() -> None:
    answer = {"outputs": [{"name": "a", "datatype": "FP16", "shape": [1], "data": [1.5]}]}
    payload = {
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
        "parameters": {"binary_data_output": True},
    }
    header, tail = tensors.encode_response(answer, tensors.parse_request(payload, b""))
    assert json.loads(header)["outputs"][0]["parameters"] == {"binary_data_size": 2}
    assert tail == np.array([1.5], dtype="<f2").tobytes()
    bad = {"outputs": [{"name": "a", "datatype": "FP16", "shape": [2], "data": [1.5]}]}
    with pytest.raises(ServingError, match="output 'a' of the model") as raised:
        tensors.encode_response(bad, tensors.parse_request(payload, b""))
    assert raised.value.status == 500


def test_the_codec_imports_no_transport() -> None:
    """Every transport (REST here, gRPC next) shares the codec, so it must not pull one in."""
    probe = (
        "import sys, marserve.tensor_codec; "
        "print(sorted(m for m in ('aiohttp', 'grpc', 'torch') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_a_handler_taking_tensors_gets_nested_lists_and_the_request_parameters() -> None:
    payload = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]},
            {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
        ],
        "parameters": {"binary_data_output": True, "top_k": 3},
    }
    assert tensors.handler_inputs(tensors.parse_request(payload, b"")) == [
        ("x", [[1.0, 2.0], [3.0, 4.0]]),
        ("s", ["hi"]),
        ("parameters", {"top_k": 3}),
    ]
    payload["inputs"][1]["name"] = "parameters"
    with pytest.raises(ServingError, match="clashes"):
        tensors.handler_inputs(tensors.parse_request(payload, b""))
    del payload["parameters"]["top_k"]  # only the server's own parameter: nothing clashes
    assert [name for name, _ in tensors.handler_inputs(tensors.parse_request(payload, b""))] == [
        "x", "parameters"]  # fmt: skip
