"""The same request in each peer's wire format, and each peer's answer read back."""

from __future__ import annotations

import base64
import json

import pytest

from marbench import peers
from marbench.peers import Wire

FLOATS = [0.5, -1.0, 2.0]
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def test_raw_wire_sends_marserve_body_unchanged() -> None:
    assert peers.request_body(Wire.RAW, raw=PNG, content_type="image/png") == (PNG, "image/png")


@pytest.mark.parametrize(
    ("wire", "want"),
    [
        (Wire.KSERVE_V1, {"instances": [FLOATS]}),
        (Wire.LITSERVE, {"input": FLOATS}),
        (Wire.OPEN_INFERENCE_V2,
         {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": FLOATS}]}),
    ],
)  # fmt: skip
def test_floats_go_as_json_numbers(wire: Wire, want: dict[str, object]) -> None:
    body, content_type = peers.request_body(
        wire, raw=json.dumps(FLOATS).encode(), content_type="application/json"
    )
    assert (json.loads(body), content_type) == (want, "application/json")


@pytest.mark.parametrize(
    ("wire", "image_of"),
    [
        (Wire.KSERVE_V1, lambda document: document["instances"][0]["b64"]),
        (Wire.LITSERVE, lambda document: document["input"]),
        (Wire.OPEN_INFERENCE_V2, lambda document: document["inputs"][0]["data"][0]),
    ],
)
def test_images_go_as_base64_text(wire: Wire, image_of: object) -> None:
    body, _ = peers.request_body(wire, raw=PNG, content_type="image/png")
    assert callable(image_of)
    assert base64.b64decode(image_of(json.loads(body))) == PNG


@pytest.mark.parametrize(
    ("wire", "answer"),
    [
        (Wire.RAW, FLOATS),
        (Wire.KSERVE_V1, {"predictions": [FLOATS]}),
        (Wire.LITSERVE, {"output": FLOATS}),
        (Wire.OPEN_INFERENCE_V2, {"outputs": [{"name": "output-0", "data": FLOATS}]}),
    ],
)
def test_answers_read_back_to_the_output_row(wire: Wire, answer: object) -> None:
    assert peers.parse_answer(wire, json.dumps(answer).encode()) == FLOATS
