"""Open Inference Protocol (KServe v2) REST routes on the inference port.

Errors on every `/v2` path carry the protocol's `{"error": message}` body (`PATH_PREFIX`, chosen
once in the middleware). Requests may carry tensors as JSON data or as raw bytes after the JSON
header (the binary data extension); responses return the outputs the client named, in binary
where it asked. The handler gets what TorchServe 0.12 gives it, the request document as `body`,
unless its model YAML opts into tensors (`openInferenceProtocol.handlerInput: tensors`, see
`model_signature`); a model with an envelope (e.g. `kservev2`) gets the body too.
"""

from __future__ import annotations

from aiohttp import web

from marserve.results import PredictionResult
from marserve.server import open_inference, openapi, tensors
from marserve.server.http_io import (
    JSON,
    REQUEST_ID,
    decode_result_body,
    inference_request,
    parse_json,
    result_response,
)
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels

PATH_PREFIX = "/v2"
TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    },
}
# A binary body is the JSON request, Inference-Header-Content-Length bytes, then raw tensors.
INFER_BODY = {"content": {
    "application/json": {"schema": INFER_REQUEST},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "required": True}  # fmt: skip


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
        return web.json_response(open_inference.server_metadata())

    @openapi.operation("Liveness")
    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    @openapi.operation("Readiness")
    async def ready(self, request: web.Request) -> web.Response:
        ready = self.models.ready
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    @openapi.operation("Model metadata")
    async def model_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(open_inference.model_metadata(self._scheduler(request)))

    @openapi.operation("Model readiness")
    async def model_ready(self, request: web.Request) -> web.Response:
        scheduler = self._scheduler(request)
        body = {"name": scheduler.name, "ready": scheduler.ready}
        return web.json_response(body, status=200 if scheduler.ready else 503)

    @openapi.operation("Open Inference Protocol infer", body=INFER_BODY)
    async def infer(self, request: web.Request) -> web.Response:
        info = request.match_info
        return await self.infer_model(request, model=info["model"], version=info.get("version"))

    async def infer_model(
        self, request: web.Request, *, model: str, version: str | None
    ) -> web.Response:
        """Decodes and checks every tensor once, hands the handler its inputs, and shapes the
        answer as the client asked; a handler given the body whose client asked for nothing
        more than JSON gets its answer returned as it is, as TorchServe does."""
        scheduler = self.models.find(model, version)
        body = await request.read()
        header, binary = tensors.split_body(body, request.headers.get(tensors.HEADER_LENGTH))
        payload = parse_json(header)
        decoded = tensors.parse_request(payload, binary)
        tensor_inputs = open_inference.takes_tensors(scheduler)
        parameters = open_inference.handler_parameters(
            decoded,
            document=payload,
            tensor_inputs=tensor_inputs,
            json_body=None if binary else body,
        )
        reply = await scheduler.infer(inference_request(request, parameters, explain=False))
        result = open_inference.one_result(
            reply, model=scheduler.name, protocol="the Open Inference Protocol"
        )
        if not tensor_inputs and not tensors.wants_shaping(decoded):
            return result_response(result, max_size=self.max_response_size)
        answer = open_inference.inference_response(
            decode_result_body(result),
            scheduler=scheduler,
            request_id=decoded.id or request[REQUEST_ID],
        )
        json_header, tail = tensors.encode_response(answer, decoded)
        headers = {tensors.HEADER_LENGTH: str(len(json_header))} if tail else {}
        encoded = PredictionResult(
            request_id=result.request_id,
            status=200,
            body=json_header + tail,
            content_type="application/octet-stream" if tail else JSON,
            headers=headers,
        )
        return result_response(encoded, max_size=self.max_response_size)
