"""Open Inference Protocol REST documents: the request's JSON header and binary tail, and the
response shaped as the client asked (named outputs, JSON or binary data).

Tensors themselves are decoded and encoded by `marserve.tensor_codec`; this module knows where
they sit in a REST body. Every mistake of the client raises `ServingError(400)` naming the input
and what differs, before any worker sees the request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marserve import tensor_codec
from marserve.server.errors import ServingError
from marserve.tensor_codec import Array, TensorError

HEADER_LENGTH = "Inference-Header-Content-Length"
# Request parameters that tell the server how to answer; the handler never sees them.
SERVER_PARAMETERS = frozenset({"binary_data_output"})


@dataclass(frozen=True)
class InputTensor:
    """One decoded input: its name, datatype and the array shaped as declared."""

    name: str
    datatype: str
    array: Array


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request: its inputs and how the client wants the outputs back.

    `outputs` is None when the client named none (then every output is returned, in binary when
    `binary_output` says so); otherwise each named output maps to whether it goes in binary.
    """

    id: str | None
    inputs: tuple[InputTensor, ...]
    parameters: Mapping[str, Any]
    outputs: Mapping[str, bool] | None
    binary_output: bool
    had_binary_inputs: bool


def _bad(message: str) -> ServingError:
    return ServingError(400, "InvalidInput", message)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail of a body; without the header both are the JSON."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit():
        raise _bad(f"{HEADER_LENGTH} must be a non-negative integer, not {header_length!r}")
    length = int(header_length)
    if length > len(body):
        raise _bad(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes")
    return body[:length], body[length:]


def parse_request(payload: Any, binary: bytes) -> InferRequest:
    """Checks and decodes an infer request whose binary tensors are laid out in `binary`."""
    if not isinstance(payload, dict):
        raise _bad("The request must be a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("'inputs' must be a non-empty list of tensors")
    parameters = _parameters(payload, where="the request")
    offset = 0
    decoded: list[InputTensor] = []
    for position, tensor in enumerate(inputs):
        tensor_input, size = _input(tensor, position=position, binary=binary, offset=offset)
        decoded.append(tensor_input)
        offset += size
    if offset != len(binary):
        raise _bad(f"the binary tensor data has {len(binary) - offset} bytes no input claims")
    request_id = payload.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=tuple(decoded),
        parameters=parameters,
        outputs=_requested_outputs(payload.get("outputs")),
        binary_output=parameters.get("binary_data_output") is True,
        had_binary_inputs=bool(binary),
    )


def _input(tensor: Any, *, position: int, binary: bytes, offset: int) -> tuple[InputTensor, int]:
    """One input and how many bytes of the binary tail it took."""
    if not isinstance(tensor, dict):
        raise _bad(f"inputs[{position}] must be an object")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"inputs[{position}] has no name")
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    size = _parameters(tensor, where=f"input {name!r}").get("binary_data_size")
    try:
        if size is None:
            array = tensor_codec.from_json(tensor.get("data"), datatype=datatype, shape=shape)
            return InputTensor(name, str(datatype), array), 0
        if "data" in tensor:
            raise TensorError("has both 'data' and parameters.binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise TensorError(f"binary_data_size must be a non-negative integer, not {size!r}")
        if offset + size > len(binary):
            raise TensorError(
                f"binary_data_size {size} runs past the body ({len(binary) - offset} bytes left)"
            )
        raw = binary[offset : offset + size]
        array = tensor_codec.from_raw(raw, datatype=datatype, shape=shape)
        return InputTensor(name, str(datatype), array), size
    except TensorError as error:
        raise _bad(f"input {name!r}: {error}") from error


def _parameters(document: Mapping[str, Any], *, where: str) -> Mapping[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad(f"parameters of {where} must be an object")
    return parameters


def _requested_outputs(outputs: Any) -> dict[str, bool] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(output, dict) and isinstance(output.get("name"), str) for output in outputs
    ):
        raise _bad("'outputs' must be a list of objects with a name")
    requested: dict[str, bool] = {}
    for output in outputs:
        parameters = _parameters(output, where=f"output {output['name']!r}")
        requested[output["name"]] = parameters.get("binary_data") is True
    return requested


def json_document(payload: Mapping[str, Any], request: InferRequest) -> dict[str, Any]:
    """The request with binary inputs turned into JSON `data`, for handlers that parse JSON."""
    document = dict(payload)
    document["inputs"] = [
        {
            **{k: v for k, v in original.items() if k != "parameters"},
            "data": tensor_codec.to_json(tensor.array, datatype=tensor.datatype),
        }
        for original, tensor in zip(payload["inputs"], request.inputs, strict=True)
    ]
    return document


def handler_inputs(request: InferRequest) -> list[tuple[str, Any]]:
    """The named inputs a handler that opted into tensors gets: each tensor as nested lists
    shaped as declared, and the request's own `parameters` (if any) as the input of that name."""
    inputs = [
        (tensor.name, tensor_codec.to_nested(tensor.array, datatype=tensor.datatype))
        for tensor in request.inputs
    ]
    parameters = {k: v for k, v in request.parameters.items() if k not in SERVER_PARAMETERS}
    if parameters:
        if any(name == "parameters" for name, _ in inputs):
            raise _bad("an input named 'parameters' clashes with the request's parameters")
        inputs.append(("parameters", parameters))
    return inputs


def output_tensor(value: Any, *, name: str) -> dict[str, Any]:
    """Describes a handler's JSON answer as an output tensor (shape and datatype inferred)."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = tensor_codec.flatten(value)
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


def wants_shaping(request: InferRequest) -> bool:
    """Whether the client asked for anything beyond every output as JSON."""
    return request.outputs is not None or request.binary_output


def chosen_outputs(
    answer: Mapping[str, Any], request: InferRequest
) -> list[tuple[Mapping[str, Any], bool]]:
    """The outputs of an inference response the client named (all when it named none), each
    with whether it goes in binary. Raises 400 for a named output the model lacks and 500 for an
    answer whose outputs are not tensors."""
    outputs = answer.get("outputs")
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ServingError(500, "InvalidModelOutput", "The model's answer has no 'outputs' list")
    if request.outputs is None:
        return [(output, request.binary_output) for output in outputs]
    by_name = {output.get("name"): output for output in outputs}
    missing = sorted(set(request.outputs) - set(by_name))
    if missing:
        raise _bad(f"the model has no output named {', '.join(map(repr, missing))}")
    return [(by_name[name], binary) for name, binary in request.outputs.items()]


def encode_response(answer: Mapping[str, Any], request: InferRequest) -> tuple[bytes, bytes]:
    """The REST response's JSON header and binary tail: the chosen outputs, each in binary
    where asked."""
    tail: list[bytes] = []
    encoded = []
    for output, binary in chosen_outputs(answer, request):
        if not binary:
            encoded.append(output)
            continue
        raw = raw_output(output)
        tail.append(raw)
        parameters = {**output.get("parameters", {}), "binary_data_size": len(raw)}
        described = {key: value for key, value in output.items() if key != "data"}
        encoded.append({**described, "parameters": parameters})
    header = json.dumps({**answer, "outputs": encoded}).encode()
    return header, b"".join(tail)


def raw_output(output: Mapping[str, Any]) -> bytes:
    """The raw bytes of an output tensor given as JSON; one that is not a tensor is the
    model's fault (500)."""
    try:
        array = tensor_codec.from_json(
            output.get("data"), datatype=output.get("datatype"), shape=output.get("shape")
        )
        return tensor_codec.to_raw(array, datatype=str(output["datatype"]))
    except TensorError as error:
        raise ServingError(
            500, "InvalidModelOutput", f"output {output.get('name')!r} of the model: {error}"
        ) from error
