"""Handler answers encode to exactly the bytes of TorchServe's `json.dumps(value, indent=2)`."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import random
import uuid
from typing import Any

import pytest

from marserve import indented_json
from marserve.responses import UnsupportedOutputError, encode_body


def reference(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode("utf-8")


def floats(count: int) -> list[float]:
    """Model-like outputs across every magnitude, both signs, and the exponent boundaries."""
    rng = random.Random(7)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20) for _ in range(count)]
    return [*values, 0.0, -0.0, 1e-4, 9.99e-5, 1e16, 9999999999999998.0, 1e-5, 0.5, 2.0**53]


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


CORPUS: list[Any] = [
    floats(2000),
    [[0.1, -0.2, 3.5, 4.0]] * 8,
    {"label": "cat", "score": 0.93, "box": [1, 2, 3, 4], "nested": {"a": [], "b": {}}},
    {"probabilities": {"tabby": 0.5, "tiger": 1.2e-05}, "ok": True, "none": None},
    ["plain", 'quote" backslash\\ newline\n tab\t nul\x00 bell\x07', "del\x7f", "é ünïcode 猫"],
    {"ключ": 1},
    [math.nan, math.inf, -math.inf],
    [2**63 - 1, -(2**63), 2**64, 10**30],
    (1, (2, 3)),
    [],
    {},
    "text",
    12,
    [True, False, None],
    {1: "int key"},
    [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
]


@pytest.mark.parametrize("value", CORPUS, ids=range(len(CORPUS)))
def test_the_same_bytes_as_the_standard_library(value: Any) -> None:
    assert indented_json.dumps(value) == reference(value)


def test_plain_values_take_the_c_encoder_and_the_rest_do_not() -> None:
    assert indented_json.orjson_exact({"scores": [0.5, 1.25e-3], "label": "cat", "n": 3})
    for value in ([1e-5], [math.nan], ["é"], ["\x7f"], {1: 2}, [Colour.RED], [uuid.uuid4()]):
        assert not indented_json.orjson_exact(value)


def test_a_deep_value_is_encoded_by_the_standard_library() -> None:
    deep: list[Any] = []
    for _ in range(indented_json.MAX_DEPTH + 10):
        deep = [deep]
    assert not indented_json.orjson_exact(deep)
    assert indented_json.dumps(deep) == reference(deep)


@pytest.mark.parametrize("value", [Colour.RED, uuid.UUID(int=1), Point(1), {1j: 1}])
def test_what_json_refuses_is_still_refused(value: Any) -> None:
    with pytest.raises(UnsupportedOutputError):
        encode_body(value)


def test_a_circular_value_is_still_refused() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(UnsupportedOutputError):
        encode_body(circular)
