"""Open Inference Protocol (v2) tensors: validation of requests and shaping of answers.

A v2 tensor states its shape and datatype next to its data; a mismatch is the client's mistake and
gets a 400 that says which input and what differs, before any worker sees it.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

from marserve.server.errors import ServingError

INTEGER_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}
DATATYPES = INTEGER_TYPES | FLOAT_TYPES | {"BOOL", "BYTES"}


class InputTensor(NamedTuple):
    """One validated input: its name, its declared shape and its data flattened row-major."""

    name: str
    shape: list[int]
    flat: list[Any]


def _bad(message: str) -> ServingError:
    return ServingError(400, "InvalidInput", message)


def flatten(data: Any) -> list[Any]:
    """Row-major flattening of nested lists; v2 allows flat or nested data."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _element_ok(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if datatype in INTEGER_TYPES:
        return isinstance(value, int) and (value >= 0 or not datatype.startswith("U"))
    return isinstance(value, int | float)


def validate_request(payload: Any) -> list[InputTensor]:
    """Checks an inference request and returns its inputs; raises 400 on the first problem."""
    if not isinstance(payload, dict):
        raise _bad("The request must be a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("'inputs' must be a non-empty list of tensors")
    return [validate_tensor(tensor, position=position) for position, tensor in enumerate(inputs)]


def validate_tensor(tensor: Any, *, position: int) -> InputTensor:
    if not isinstance(tensor, dict):
        raise _bad(f"inputs[{position}] must be an object")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"inputs[{position}] has no name")
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise _bad(f"input {name!r}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    if not isinstance(data, list):
        raise _bad(f"input {name!r}: data must be a list")
    flat = flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise _bad(f"input {name!r}: shape {shape} needs {expected} elements, data has {len(flat)}")
    for value in flat:
        if not _element_ok(value, datatype):
            raise _bad(f"input {name!r}: {value!r} is not a valid {datatype} element")
    return InputTensor(name, shape, flat)


def reshape(flat: list[Any], shape: list[int]) -> Any:
    """Nests flat row-major data to `shape`, which handlers that call torch.tensor expect."""
    if len(shape) <= 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def output_tensor(value: Any, *, name: str) -> dict[str, Any]:
    """Describes a handler's JSON answer as a v2 output tensor (shape and datatype inferred)."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = flatten(value)
    if all(isinstance(v, bool) for v in flat):
        datatype = "BOOL"
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        datatype = "INT64"
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        datatype = "FP64"
    else:
        datatype = "BYTES"
        flat = [v if isinstance(v, str) else json.dumps(v) for v in flat]
    if not shape or math.prod(shape) != len(flat):
        shape = [len(flat)]
    return {"name": name, "shape": shape, "datatype": datatype, "data": flat}
