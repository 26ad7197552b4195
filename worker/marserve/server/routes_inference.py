"""Inference port routes: /ping, TorchServe predictions and explanations, and KServe v1.

Routes are thin: decode the protocol, hand the request to the model's scheduler, encode the reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from marserve.server import errors, openapi
from marserve.server.errors import ServingError
from marserve.server.http_io import (
    REQUEST_ID,
    decode_result_body,
    inference_request,
    json_parameter,
    parse_json,
    read_parameters,
    reply_response,
)
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels

V1_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["instances"],
    "properties": {"instances": {"type": "array"}}}}}, "required": True}  # fmt: skip
STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}
# TorchServe runs a prediction whatever the method (its docs upload with `curl -T`, a PUT); GET
# and DELETE predict on an empty body there too. OPTIONS, its per-model OpenAPI, is not served.
PREDICTION_METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")


class InferenceRoutes:
    """Handlers of the TorchServe-compatible and KServe v1 inference API."""

    def __init__(self, models: ServedModels, *, max_response_size: int) -> None:
        self.models = models
        self.max_response_size = max_response_size

    def add_to(self, app: web.Application) -> None:
        model = "{model:[^/:]+}"
        app.router.add_get("/ping", self.ping)
        for kind, handler in (
            ("predictions", self.predictions),
            ("explanations", self.explanations),
        ):
            for path in (f"/{kind}/{model}", f"/{kind}/{model}/{{version}}"):
                for method in PREDICTION_METHODS:
                    app.router.add_route(method, path, handler)
        app.router.add_get("/v1/models", self.v1_list)
        app.router.add_get(f"/v1/models/{model}", self.v1_model)
        app.router.add_post(f"/v1/models/{model}:predict", self.v1_predict)
        app.router.add_post(f"/v1/models/{model}:explain", self.v1_explain)

    @openapi.operation("Healthy when every model has a ready worker", ok=STATUS)
    async def ping(self, request: web.Request) -> web.Response:
        status, body = self.models.health()
        return web.json_response(body, status=status)

    @openapi.operation("Predict with a model", body=openapi.ANY_BODY)
    async def predictions(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self.predict(request, model=info["model"], version=info.get("version"))

    async def predict(
        self, request: web.Request, *, model: str, version: str | None
    ) -> web.StreamResponse:
        """A prediction from the named model; the hot path calls this with the path's parts."""
        return await self._whole_body(request, self.models.find(model, version), explain=False)

    @openapi.operation("Explain a prediction", body=openapi.ANY_BODY)
    async def explanations(self, request: web.Request) -> web.StreamResponse:
        return await self._whole_body(request, self._scheduler(request), explain=True)

    def _scheduler(self, request: web.Request) -> ModelScheduler:
        info = request.match_info
        return self.models.find(info["model"], info.get("version"))

    async def _whole_body(
        self, request: web.Request, scheduler: ModelScheduler, *, explain: bool
    ) -> web.StreamResponse:
        """TorchServe's way: the body, or each form field, reaches the handler; the query
        string does not (TorchServe 0.12 reads it only on its legacy `/{model}/predict`)."""
        parameters = await read_parameters(request)
        reply = await scheduler.infer(inference_request(request, parameters, explain=explain))
        return await reply_response(request, reply, max_size=self.max_response_size)

    @openapi.operation("KServe v1 model list")
    async def v1_list(self, request: web.Request) -> web.Response:
        return web.json_response({"models": sorted(self.models.by_name)})

    @openapi.operation("KServe v1 model readiness")
    async def v1_model(self, request: web.Request) -> web.Response:
        scheduler = self.models.find(request.match_info["model"])
        return web.json_response(
            {"name": scheduler.name, "ready": scheduler.ready},
            status=200 if scheduler.ready else 503,
        )

    @openapi.operation("KServe v1 predict", body=V1_BODY)
    async def v1_predict(self, request: web.Request) -> web.StreamResponse:
        return await self._v1(request, explain=False)

    @openapi.operation("KServe v1 explain", body=V1_BODY)
    async def v1_explain(self, request: web.Request) -> web.StreamResponse:
        return await self._v1(request, explain=True)

    async def _v1(self, request: web.Request, *, explain: bool) -> web.StreamResponse:
        """KServe v1: a model with an envelope gets the body as is; otherwise each instance is
        one request to the handler, so a list of instances is batched like separate calls."""
        scheduler = self.models.find(request.match_info["model"])
        if scheduler.source.envelope:
            return await self._whole_body(request, scheduler, explain=explain)
        payload = parse_json(await request.read())
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise ServingError(
                400, "BadRequest", 'KServe v1 requests need a non-empty "instances" list'
            )
        key = "explanations" if explain else "predictions"
        answers = await asyncio.gather(
            *(
                self._v1_instance(request, scheduler, instance, index=index, explain=explain)
                for index, instance in enumerate(instances)
            )
        )
        return web.json_response({key: answers})

    async def _v1_instance(
        self,
        request: web.Request,
        scheduler: ModelScheduler,
        instance: Any,
        *,
        index: int,
        explain: bool,
    ) -> Any:
        reply = await scheduler.infer(
            inference_request(
                request,
                (json_parameter("body", instance),),
                explain=explain,
                request_id=f"{request[REQUEST_ID]}-{index}",
            )
        )
        if reply.rest is not None:
            raise errors.streamed_answer(scheduler.name, protocol="KServe v1")
        result = reply.first
        if not result.ok:
            raise ServingError(
                result.status, "PredictionError", result.body.decode(errors="replace")
            )
        return decode_result_body(result)
