"""Open Inference Protocol gRPC messages to and from the protocol's own terms: a
`ModelInferRequest` decoded into the `tensors.InferRequest` REST decodes to, and an inference
response written as a `ModelInferResponse` with every output in `raw_output_contents`.

Tensors go through `marserve.tensor_codec`, so gRPC checks sizes before allocating exactly as REST
does; every mistake of the client is a 400 (INVALID_ARGUMENT) naming the input and what differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from marserve import tensor_codec
from marserve.grpc.oip import grpc_predict_v2_pb2 as pb
from marserve.grpc.status import invalid_argument
from marserve.server import tensors
from marserve.server.errors import ServingError
from marserve.server.tensors import InferRequest, InputTensor
from marserve.tensor_codec import Array, TensorError

# The typed `contents` field each datatype travels in; FP16 and BF16 have none (raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
INT64_MAX = 2**63 - 1


def infer_request(message: pb.ModelInferRequest) -> tuple[InferRequest, dict[str, Any]]:
    """The decoded request, and the JSON document REST would have received for it (what a
    handler given the body gets)."""
    if not message.inputs:
        raise invalid_argument("'inputs' must hold at least one tensor")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise invalid_argument(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; "
            "give one per input, or none and use contents"
        )
    decoded = tuple(
        _input(tensor, raw=raw[position] if raw else None, position=position)
        for position, tensor in enumerate(message.inputs)
    )
    parameters = parameter_values(message.parameters)
    outputs = {output.name: False for output in message.outputs} if message.outputs else None
    request = InferRequest(
        id=message.id or None,
        inputs=decoded,
        parameters=parameters,
        outputs=outputs,
        binary_output=False,
        had_binary_inputs=bool(raw),
    )
    document: dict[str, Any] = {
        "inputs": [
            {"name": t.name, "shape": list(t.shape), "datatype": t.datatype} for t in message.inputs
        ]
    }
    if message.id:
        document["id"] = message.id
    if parameters:
        document["parameters"] = dict(parameters)
    if outputs is not None:
        document["outputs"] = [{"name": name} for name in outputs]
    return request, document


def _input(
    tensor: pb.ModelInferRequest.InferInputTensor, *, raw: bytes | None, position: int
) -> InputTensor:
    if not tensor.name:
        raise invalid_argument(f"inputs[{position}] has no name")
    shape = list(tensor.shape)
    try:
        if raw is not None:
            if tensor.HasField("contents"):
                raise TensorError("has both contents and raw_input_contents")
            array = tensor_codec.from_raw(raw, datatype=tensor.datatype, shape=shape)
        else:
            array = _from_contents(tensor.contents, datatype=tensor.datatype, shape=shape)
    except TensorError as error:
        raise invalid_argument(f"input {tensor.name!r}: {error}") from error
    return InputTensor(tensor.name, tensor.datatype, array)


def _from_contents(contents: pb.InferTensorContents, *, datatype: str, shape: list[int]) -> Array:
    """A tensor from the typed field its datatype travels in; any other field set is a mistake."""
    datatype = tensor_codec.check_datatype(datatype)
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise TensorError(f"{datatype} has no typed contents: send it in raw_input_contents")
    others = [f.name for f, _ in contents.ListFields() if f.name != field]
    if others:
        raise TensorError(f"a {datatype} tensor travels in {field}, not {', '.join(others)}")
    values = list(getattr(contents, field))
    if datatype != "BYTES":
        return tensor_codec.from_json(values, datatype=datatype, shape=shape)
    expected = tensor_codec.element_count(shape)
    if len(values) != expected:
        raise TensorError(f"shape {shape} needs {expected} elements, data has {len(values)}")
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(tuple(shape))


def parameter_values(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A parameters map as plain values, as REST's JSON carries them."""
    values = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = None if choice is None else getattr(parameter, choice)
    return values


def parameter_messages(values: Any) -> dict[str, pb.InferParameter]:
    """A model's parameters as a parameters map; what has no scalar field travels as JSON text."""
    if not isinstance(values, Mapping):
        raise ServingError(500, "InvalidModelOutput", "The model's 'parameters' is not an object")
    messages = {}
    for name, value in values.items():
        if isinstance(value, bool):
            messages[name] = pb.InferParameter(bool_param=value)
        elif isinstance(value, int) and value > INT64_MAX:
            messages[name] = pb.InferParameter(uint64_param=value)
        elif isinstance(value, int):
            messages[name] = pb.InferParameter(int64_param=value)
        elif isinstance(value, float):
            messages[name] = pb.InferParameter(double_param=value)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            messages[name] = pb.InferParameter(string_param=text)
    return messages


def infer_response(answer: Mapping[str, Any], request: InferRequest) -> pb.ModelInferResponse:
    """An inference response (`open_inference.inference_response`) with the outputs the client
    named, each as raw bytes, as Triton answers."""
    outputs: list[pb.ModelInferResponse.InferOutputTensor] = []
    raw: list[bytes] = []
    for output, _ in tensors.chosen_outputs(answer, request):
        raw.append(tensors.raw_output(output))
        outputs.append(
            pb.ModelInferResponse.InferOutputTensor(
                name=str(output.get("name")),
                datatype=str(output["datatype"]),
                shape=[int(dim) for dim in output["shape"]],  # raw_output checked it
                parameters=parameter_messages(output.get("parameters", {})),
            )
        )
    return pb.ModelInferResponse(
        model_name=str(answer["model_name"]),
        model_version=str(answer["model_version"]),
        id="" if answer.get("id") is None else str(answer["id"]),
        parameters=parameter_messages(answer.get("parameters", {})),
        outputs=outputs,
        raw_output_contents=raw,
    )
