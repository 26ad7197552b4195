"""TorchServe's gRPC inference API (`InferenceAPIsService`, port 7070) over the served models.

A thin adapter like the HTTP routes: each `input` entry becomes one named input of the same
`InferenceRequest` the HTTP route builds (TorchServe's gRPC sends no content type, so handlers get
the bytes), the model's scheduler answers, and its result body is `prediction`. Streaming handlers
reach clients chunk by chunk on StreamPredictions; StreamPredictions2 answers a sequence of
requests on one stream in order, each tagged with its `sequenceId`, and reports a failed request
in that response's `status` instead of ending the stream, as TorchServe does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from google.rpc import status_pb2

from marserve.grpc.listener import Call, GrpcService
from marserve.grpc.status import grpc_code, invalid_argument, prediction_error
from marserve.grpc.torchserve import inference_pb2
from marserve.inference_request import InferenceRequest, Parameter
from marserve.results import PredictionResult
from marserve.server.batching import Reply
from marserve.server.errors import ServingError
from marserve.server.http_io import EXPLAIN, check_response_size
from marserve.server.served_models import ServedModels

# The header TorchServe gives handlers the sequence id of a StreamPredictions2 request in.
SEQUENCE_ID_HEADER = "ts_request_sequence_id"


class TorchServeInference:
    """The methods of `org.pytorch.serve.grpc.inference.InferenceAPIsService`."""

    def __init__(self, models: ServedModels, *, max_response_size: int) -> None:
        self.models = models
        self.max_response_size = max_response_size

    def service(self) -> GrpcService:
        return GrpcService(
            descriptor=inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"],
            methods={
                "Ping": self.ping,
                "Predictions": self.predictions,
                "StreamPredictions": self.stream_predictions,
                "StreamPredictions2": self.stream_predictions2,
            },
            public_methods={"Ping"},
        )

    async def ping(
        self, request: empty_pb2.Empty, call: Call
    ) -> inference_pb2.TorchServeHealthResponse:
        """The body /ping answers, as JSON in `health` (TorchServe answers Unhealthy the same
        way, with an OK status)."""
        _, body = self.models.health()
        return inference_pb2.TorchServeHealthResponse(health=json.dumps(body))

    async def predictions(
        self, request: inference_pb2.PredictionsRequest, call: Call
    ) -> inference_pb2.PredictionResponse:
        """One answer: a streaming handler's chunks joined, as HTTP's chunked body carries them."""
        reply = await self._infer(request, call, request_id=call.request_id)
        bodies = [self._body(reply.first)]
        if reply.rest is not None:
            bodies += [self._body(result) async for result in reply.rest]
        prediction = b"".join(bodies)
        check_response_size(prediction, max_size=self.max_response_size)
        return inference_pb2.PredictionResponse(prediction=prediction)

    async def stream_predictions(
        self, request: inference_pb2.PredictionsRequest, call: Call
    ) -> AsyncIterator[inference_pb2.PredictionResponse]:
        reply = await self._infer(request, call, request_id=call.request_id)
        async for result in reply.results():
            yield inference_pb2.PredictionResponse(prediction=self._body(result))

    async def stream_predictions2(
        self, requests: AsyncIterator[inference_pb2.PredictionsRequest], call: Call
    ) -> AsyncIterator[inference_pb2.PredictionResponse]:
        index = 0
        async for request in requests:
            index += 1
            sequence_id = request.sequenceId
            try:
                if not sequence_id:
                    raise invalid_argument("StreamPredictions2 requests need a sequenceId")
                reply = await self._infer(
                    request,
                    call,
                    request_id=f"{call.request_id}-{index}",
                    headers=((SEQUENCE_ID_HEADER, sequence_id),),
                )
                async for result in reply.results():
                    yield inference_pb2.PredictionResponse(
                        prediction=self._body(result), sequenceId=sequence_id
                    )
            except ServingError as error:
                status = status_pb2.Status(code=grpc_code(error).value[0], message=error.message)
                yield inference_pb2.PredictionResponse(sequenceId=sequence_id, status=status)

    async def _infer(
        self,
        request: inference_pb2.PredictionsRequest,
        call: Call,
        *,
        request_id: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        if not request.model_name:
            raise invalid_argument("model_name is required")
        if not request.input:
            raise invalid_argument("input is empty: give the model at least one named input")
        scheduler = self.models.find(request.model_name, request.model_version)
        return await scheduler.infer(
            InferenceRequest(
                request_id=request_id,
                parameters=tuple(
                    Parameter(name, "", value) for name, value in sorted(request.input.items())
                ),
                headers=(*call.metadata, *headers, EXPLAIN[False]),
            )
        )

    def _body(self, result: PredictionResult) -> bytes:
        if not result.ok:
            raise prediction_error(result)
        check_response_size(result.body, max_size=self.max_response_size)
        return result.body
