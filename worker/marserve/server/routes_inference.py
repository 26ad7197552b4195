"""Inference port routes: /ping, TorchServe predictions and explanations, and KServe v1.

Routes are thin: decode the protocol, call the data plane, encode the answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from marserve.inference_request import Parameter
from marserve.server.dataplane import DataPlane
from marserve.server.errors import ServingError
from marserve.server.http_io import (
    REQUEST_ID,
    read_json,
    read_parameters,
    request_headers,
    result_response,
    stream_response,
)
from marserve.server.scheduler import ModelScheduler

JSON = "application/json"


class InferenceRoutes:
    """Handlers of the TorchServe-compatible and KServe v1 inference API."""

    def __init__(self, plane: DataPlane, *, max_response_size: int) -> None:
        self.plane = plane
        self.max_response_size = max_response_size

    def add_to(self, app: web.Application) -> None:
        model = "{model:[^/:]+}"
        app.router.add_get("/ping", self.ping)
        for path in (f"/predictions/{model}", f"/predictions/{model}/{{version}}"):
            app.router.add_post(path, self.predictions)
        for path in (f"/explanations/{model}", f"/explanations/{model}/{{version}}"):
            app.router.add_post(path, self.explanations)
        app.router.add_get("/v1/models", self.v1_list)
        app.router.add_get(f"/v1/models/{model}", self.v1_model)
        app.router.add_post(f"/v1/models/{model}:predict", self.v1_predict)
        app.router.add_post(f"/v1/models/{model}:explain", self.v1_explain)

    async def ping(self, request: web.Request) -> web.Response:
        if self.plane.ready:
            return web.json_response({"status": "Healthy"})
        waiting = sorted(name for name, r in self.plane.runners.items() if not r.ready)
        message = "Not ready: " + (
            ", ".join(waiting) + " not loaded" if self.plane.accepting else "shutting down"
        )
        body = {"status": "Unhealthy", "code": 503, "type": "ServiceUnavailable"}
        return web.json_response({**body, "message": message}, status=503)

    async def predictions(self, request: web.Request) -> web.StreamResponse:
        return await self._torchserve(request, explain=False)

    async def explanations(self, request: web.Request) -> web.StreamResponse:
        return await self._torchserve(request, explain=True)

    async def _torchserve(self, request: web.Request, *, explain: bool) -> web.StreamResponse:
        info = request.match_info
        runner = self.plane.runner(info["model"], info.get("version"))
        parameters = await read_parameters(request)
        return await self._answer(request, runner, parameters, explain=explain)

    async def _answer(
        self,
        request: web.Request,
        runner: ModelScheduler,
        parameters: list[Parameter],
        *,
        explain: bool,
    ) -> web.StreamResponse:
        outcome = await self.plane.predict(
            runner,
            request_id=request[REQUEST_ID],
            parameters=parameters,
            headers=request_headers(request, explain=explain),
        )
        if isinstance(outcome, tuple):
            start, job = outcome
            return await stream_response(request, start=start, job=job)
        return result_response(outcome, max_size=self.max_response_size)

    async def v1_list(self, request: web.Request) -> web.Response:
        return web.json_response({"models": sorted(self.plane.runners)})

    async def v1_model(self, request: web.Request) -> web.Response:
        runner = self.plane.runner(request.match_info["model"])
        return web.json_response(
            {"name": runner.name, "ready": runner.ready}, status=200 if runner.ready else 503
        )

    async def v1_predict(self, request: web.Request) -> web.StreamResponse:
        return await self._v1(request, explain=False)

    async def v1_explain(self, request: web.Request) -> web.StreamResponse:
        return await self._v1(request, explain=True)

    async def _v1(self, request: web.Request, *, explain: bool) -> web.StreamResponse:
        """KServe v1: a model with an envelope gets the body as is; otherwise each instance is
        one request to the handler, so a list of instances is batched like separate calls."""
        runner = self.plane.runner(request.match_info["model"])
        if runner.source.envelope:
            parameters = await read_parameters(request)
            return await self._answer(request, runner, parameters, explain=explain)
        payload = await read_json(request)
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise ServingError(
                400, "BadRequest", 'KServe v1 requests need a non-empty "instances" list'
            )
        key = "explanations" if explain else "predictions"
        answers = await asyncio.gather(
            *(
                self._v1_instance(request, runner, instance, index=index, explain=explain)
                for index, instance in enumerate(instances)
            )
        )
        return web.json_response({key: answers})

    async def _v1_instance(
        self,
        request: web.Request,
        runner: ModelScheduler,
        instance: Any,
        *,
        index: int,
        explain: bool,
    ) -> Any:
        outcome = await self.plane.predict(
            runner,
            request_id=f"{request[REQUEST_ID]}-{index}",
            parameters=[Parameter("body", JSON, json.dumps(instance).encode())],
            headers=request_headers(request, explain=explain),
        )
        result = outcome[0].first if isinstance(outcome, tuple) else outcome
        if not result.ok:
            raise ServingError(
                result.status, "PredictionError", result.body.decode(errors="replace")
            )
        return decode_result_body(result.body, result.content_type)


def decode_result_body(body: bytes, content_type: str) -> Any:
    """A handler's answer as a JSON value: parsed when it is JSON, text otherwise."""
    if "json" in content_type or not content_type:
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
    return body.decode(errors="replace")
