"""Open Inference Protocol (KServe v2) REST routes on the inference port.

A model whose manifest names an envelope (e.g. `kservev2`) receives the validated request as is.
Otherwise each input tensor reaches the handler as one named input holding nested lists shaped as
declared, and the handler's JSON answer is returned as an output tensor.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from aiohttp import web

from marserve.inference_request import Parameter
from marserve.server.dataplane import DataPlane
from marserve.server.http_io import (
    REQUEST_ID,
    read_json,
    request_headers,
    result_response,
)
from marserve.server.routes_inference import decode_result_body
from marserve.server.scheduler import ModelScheduler
from marserve.server.tensors import flatten, output_tensor, reshape, validate_request

JSON = "application/json"


def server_version() -> str:
    try:
        return metadata.version("marserve")
    except metadata.PackageNotFoundError:
        return "0"


class V2Routes:
    """Handlers of the Open Inference Protocol REST API."""

    def __init__(self, plane: DataPlane, *, max_response_size: int) -> None:
        self.plane = plane
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

    def _runner(self, request: web.Request) -> ModelScheduler:
        info = request.match_info
        return self.plane.runner(info["model"], info.get("version"))

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "marserve", "version": server_version(), "extensions": []}
        )

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        ready = self.plane.ready
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def model_metadata(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        return web.json_response(
            {
                "name": runner.name,
                "versions": [runner.source.version],
                "platform": "pytorch_torchserve",
                "inputs": [],
                "outputs": [],
            }
        )

    async def model_ready(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        body = {"name": runner.name, "ready": runner.ready}
        return web.json_response(body, status=200 if runner.ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        payload = await read_json(request)
        inputs = validate_request(payload)
        if runner.source.envelope:
            parameters = [Parameter("body", JSON, json.dumps(payload).encode())]
        else:
            parameters = [
                Parameter(
                    tensor["name"],
                    JSON,
                    json.dumps(reshape(flatten(tensor["data"]), tensor["shape"])).encode(),
                )
                for tensor in inputs
            ]
        outcome = await self.plane.predict(
            runner,
            request_id=request[REQUEST_ID],
            parameters=parameters,
            headers=request_headers(request, explain=False),
        )
        result = outcome[0].first if isinstance(outcome, tuple) else outcome
        if not result.ok or runner.source.envelope:
            return result_response(result, max_size=self.max_response_size)
        answer = decode_result_body(result.body, result.content_type)
        return web.json_response(
            _v2_response(answer, runner=runner, request_id=payload.get("id") or request[REQUEST_ID])
        )


def _v2_response(answer: Any, *, runner: ModelScheduler, request_id: str) -> dict[str, Any]:
    if isinstance(answer, dict) and isinstance(answer.get("outputs"), list):
        response = dict(answer)
    else:
        response = {"outputs": [output_tensor(answer, name="output-0")]}
    response.setdefault("model_name", runner.name)
    response.setdefault("model_version", runner.source.version)
    response.setdefault("id", str(request_id))
    return response
