"""What the Open Inference Protocol means whatever carries it: server and model metadata, the
handler's input made from decoded tensors, and the handler's answer as an inference response.

REST (`routes_v2`) and gRPC (`marserve.grpc.oip`) decode their own wire format into a
`tensors.InferRequest` and encode the response back; everything between is here, once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from marserve.inference_request import Parameter
from marserve.results import PredictionResult
from marserve.server import errors, model_signature, tensors
from marserve.server.batching import Reply
from marserve.server.errors import ServingError
from marserve.server.http_io import JSON, decode_result_body, json_parameter
from marserve.server.scheduler import ModelScheduler

EXTENSIONS = ("binary_tensor_data", "parameters")


def server_version() -> str:
    try:
        return metadata.version("marserve")
    except metadata.PackageNotFoundError:
        return "0"


def server_metadata() -> dict[str, Any]:
    return {"name": "marserve", "version": server_version(), "extensions": list(EXTENSIONS)}


def model_metadata(scheduler: ModelScheduler) -> dict[str, Any]:
    """The model's name, version, platform and declared tensors (its model YAML's block)."""
    signature = scheduler.source.signature
    return {
        "name": scheduler.name,
        "versions": [scheduler.source.version],
        "platform": model_signature.platform(
            scheduler.source.manifest, scheduler.source.yaml_config
        ),
        "inputs": [spec.metadata() for spec in signature.inputs],
        "outputs": [spec.metadata() for spec in signature.outputs],
    }


def takes_tensors(scheduler: ModelScheduler) -> bool:
    """Whether the handler opted into tensors; one with an envelope gets the body regardless."""
    return scheduler.source.signature.tensor_inputs and not scheduler.source.envelope


def handler_parameters(
    request: tensors.InferRequest,
    *,
    document: Mapping[str, Any],
    tensor_inputs: bool,
    json_body: bytes | None = None,
) -> tuple[Parameter, ...]:
    """The handler's inputs: one per tensor when it takes tensors, otherwise the request
    `document` as `body` with every tensor as JSON `data` (`json_body` when the client's own
    JSON already is that document, handed on untouched as TorchServe does)."""
    if tensor_inputs:
        return tuple(json_parameter(name, value) for name, value in tensors.handler_inputs(request))
    if json_body is not None:
        return (Parameter("body", JSON, json_body),)
    return (json_parameter("body", tensors.json_document(document, request)),)


def one_result(
    reply: Reply, *, model: str, protocol: str, instead: str | None = None
) -> PredictionResult:
    """The handler's one answer; a streamed answer cannot be one response and is refused,
    naming the call that streams (`instead`)."""
    if reply.rest is not None:
        raise errors.streamed_answer(model, protocol=protocol, instead=instead)
    return checked(reply.first)


def checked(result: PredictionResult) -> PredictionResult:
    """A successful result as it is; a failure as a ServingError keeping its status and the
    handler's message."""
    if result.ok:
        return result
    message = decode_result_body(result)
    if isinstance(message, dict) and isinstance(message.get("message"), str):
        raise ServingError(result.status, str(message.get("type", "")), message["message"])
    text = message if isinstance(message, str) else json.dumps(message)
    raise ServingError(result.status, "PredictionError", text)


def inference_response(
    answer: Any, *, scheduler: ModelScheduler, request_id: str
) -> dict[str, Any]:
    """The handler's answer as an inference response: as it is when it is one, otherwise the
    output `output-0`."""
    if isinstance(answer, dict) and isinstance(answer.get("outputs"), list):
        response = dict(answer)
    else:
        response = {"outputs": [tensors.output_tensor(answer, name="output-0")]}
    response.setdefault("model_name", scheduler.name)
    response.setdefault("model_version", scheduler.source.version)
    response.setdefault("id", str(request_id))
    return response
