"""Pure pieces of the protocols: v2 tensor checks and shaping, GPU assignment, the JSON error
body."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from marserve import error_body, responses, tensor_codec
from marserve.server import devices, tensors
from marserve.server.errors import ServingError


def test_nested_data_flattens_row_major() -> None:
    nested = [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]]
    assert tensor_codec.flatten(nested) == list(range(12))
    array = tensor_codec.from_json(nested, datatype="INT64", shape=[2, 3, 2])
    assert tensor_codec.to_nested(array, datatype="INT64") == nested


@pytest.mark.parametrize(
    ("value", "datatype", "shape"),
    [([[1.5, 2.0]], "FP64", [1, 2]), ([1, 2, 3], "INT64", [3]), ([True], "BOOL", [1]),
     ("label", "BYTES", [1])],
)  # fmt: skip
def test_output_tensor_infers_shape_and_datatype(
    value: object, datatype: str, shape: list[int]
) -> None:
    tensor = tensors.output_tensor(value, name="out")
    assert (tensor["datatype"], tensor["shape"]) == (datatype, shape)


def test_unsigned_types_reject_negative_numbers() -> None:
    good = {"inputs": [{"name": "a", "shape": [2], "datatype": "UINT8", "data": [1, 2]}]}
    assert tensors.parse_request(good, b"").inputs[0].array.tolist() == [1, 2]
    bad = {"inputs": [{"name": "a", "shape": [2], "datatype": "UINT8", "data": [1, -2]}]}
    with pytest.raises(ServingError, match="UINT8"):
        tensors.parse_request(bad, b"")


def test_gpus_are_assigned_round_robin(tmp_path: Path) -> None:
    visible = devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3,7"})
    assert visible == (0, 1, 2)
    ids = [
        devices.gpu_for_worker(i, device_ids=(), visible=visible, device_type="") for i in range(4)
    ]
    assert ids == [0, 1, 2, 0]
    chosen = [
        devices.gpu_for_worker(i, device_ids=(4, 6), visible=visible, device_type="")
        for i in range(3)
    ]
    assert chosen == [4, 6, 4]
    assert devices.gpu_for_worker(0, device_ids=(4,), visible=visible, device_type="cpu") is None
    for name in ("nvidia0", "nvidia1", "nvidiactl"):
        (tmp_path / name).touch()
    assert devices.visible_gpus({}, dev_dir=tmp_path) == (0, 1)
    assert devices.visible_gpus({}, dev_dir=tmp_path / "none") == ()


def test_front_end_and_worker_errors_carry_the_same_json_body() -> None:
    expected = {"code": 429, "type": "TooManyRequests", "message": "retry \u00e9"}
    assert json.loads(error_body.encode(429, "TooManyRequests", "retry \u00e9")) == expected
    front_end = ServingError(429, "TooManyRequests", "retry \u00e9").response()
    assert front_end.body == error_body.encode(429, "TooManyRequests", "retry \u00e9")
    worker = responses.failure(
        request_id="r", code=429, error_type="TooManyRequests", message="retry \u00e9"
    )
    assert (worker.status, worker.body) == (429, front_end.body)


def test_the_error_body_is_importable_without_aiohttp() -> None:
    """The worker process builds error bodies too, and must not import the HTTP stack."""
    probe = "import sys, marserve.error_body; print('aiohttp' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "False"
