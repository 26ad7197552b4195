"""Open Inference Protocol (KServe v2) REST routes on the inference port.

A model whose manifest names an envelope (e.g. `kservev2`) receives the validated request as is.
Otherwise each input tensor reaches the handler as one named input holding nested lists shaped as
declared, and the handler's JSON answer is returned as an output tensor.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web

from marserve.inference_request import Parameter
from marserve.server import openapi
from marserve.server.http_io import (
    JSON,
    REQUEST_ID,
    decode_result_body,
    inference_request,
    json_parameter,
    parse_json,
    result_response,
)
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels
from marserve.server.tensors import output_tensor, reshape, validate_request

INFER_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"],
    "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {"name": {"type": "string"},
                       "shape": {"type": "array", "items": {"type": "integer"}},
                       "datatype": {"type": "string"}, "data": {"type": "array"}}}}}}}},
    "required": True}  # fmt: skip


def server_version() -> str:
    try:
        return metadata.version("marserve")
    except metadata.PackageNotFoundError:
        return "0"


class V2Routes:
    """Handlers of the Open Inference Protocol REST API."""

    def __init__(self, models: ServedModels, *, max_response_size: int) -> None:
        self.models = models
        self.max_response_size = max_response_size

    def add_to(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/v2", self.server_metadata)
        router.add_get("/v2/health/live", self.live)
        router.add_get("/v2/health/ready", self.ready)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            router.add_get(base, self.model_metadata)
            router.add_get(f"{base}/ready", self.model_ready)
            router.add_post(f"{base}/infer", self.infer)

    def _scheduler(self, request: web.Request) -> ModelScheduler:
        info = request.match_info
        return self.models.find(info["model"], info.get("version"))

    @openapi.operation("Server metadata")
    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "marserve", "version": server_version(), "extensions": []}
        )

    @openapi.operation("Liveness")
    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    @openapi.operation("Readiness")
    async def ready(self, request: web.Request) -> web.Response:
        ready = self.models.ready
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    @openapi.operation("Model metadata")
    async def model_metadata(self, request: web.Request) -> web.Response:
        scheduler = self._scheduler(request)
        return web.json_response(
            {
                "name": scheduler.name,
                "versions": [scheduler.source.version],
                "platform": "pytorch_torchserve",
                "inputs": [],
                "outputs": [],
            }
        )

    @openapi.operation("Model readiness")
    async def model_ready(self, request: web.Request) -> web.Response:
        scheduler = self._scheduler(request)
        body = {"name": scheduler.name, "ready": scheduler.ready}
        return web.json_response(body, status=200 if scheduler.ready else 503)

    @openapi.operation("Open Inference Protocol infer", body=INFER_BODY)
    async def infer(self, request: web.Request) -> web.Response:
        """Parses the request once: an envelope gets the validated bytes as they came, and each
        tensor is serialised once, shaped as declared, for a handler without one."""
        scheduler = self._scheduler(request)
        body = await request.read()
        payload = parse_json(body)
        inputs = validate_request(payload)
        parameters: tuple[Parameter, ...]
        if scheduler.source.envelope:
            parameters = (Parameter("body", JSON, body),)
        else:
            parameters = tuple(
                json_parameter(tensor.name, reshape(tensor.flat, tensor.shape)) for tensor in inputs
            )
        reply = await scheduler.infer(inference_request(request, parameters, explain=False))
        result = reply.first
        if not result.ok or scheduler.source.envelope:
            return result_response(result, max_size=self.max_response_size)
        return web.json_response(
            _v2_response(
                decode_result_body(result),
                scheduler=scheduler,
                request_id=payload.get("id") or request[REQUEST_ID],
            )
        )


def _v2_response(answer: Any, *, scheduler: ModelScheduler, request_id: str) -> dict[str, Any]:
    if isinstance(answer, dict) and isinstance(answer.get("outputs"), list):
        response = dict(answer)
    else:
        response = {"outputs": [output_tensor(answer, name="output-0")]}
    response.setdefault("model_name", scheduler.name)
    response.setdefault("model_version", scheduler.source.version)
    response.setdefault("id", str(request_id))
    return response
