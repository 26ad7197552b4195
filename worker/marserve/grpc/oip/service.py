"""The Open Inference Protocol's `inference.GRPCInferenceService` over the served models, beside
TorchServe's services on the gRPC inference port (7070).

A thin adapter like `routes_v2`: `messages` decodes the request into the protocol's terms,
`open_inference` makes the handler's input and reads its answer exactly as for REST, and the
model's scheduler does the rest. ServerLive and ServerReady need no token, as their REST paths
do not. ModelStreamInfer answers each request of the stream in order, a streaming handler's
chunks each as one response, and reports a failed request in `error_message` without ending the
stream, as the protocol defines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from marserve.grpc.listener import Call, GrpcService
from marserve.grpc.oip import grpc_predict_v2_pb2 as pb
from marserve.grpc.oip import messages
from marserve.grpc.status import invalid_argument
from marserve.inference_request import InferenceRequest
from marserve.results import PredictionResult
from marserve.server import open_inference
from marserve.server.batching import Reply
from marserve.server.errors import ServingError
from marserve.server.http_io import EXPLAIN, check_response_size, decode_result_body
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels
from marserve.server.tensors import InferRequest

PROTOCOL = "the Open Inference Protocol's ModelInfer"
STREAMING_CALL = "the Open Inference Protocol's ModelStreamInfer"


class OpenInferenceGrpc:
    """The methods of `inference.GRPCInferenceService`."""

    def __init__(self, models: ServedModels, *, max_response_size: int) -> None:
        self.models = models
        self.max_response_size = max_response_size

    def service(self) -> GrpcService:
        return GrpcService(
            descriptor=pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
            methods={
                "ServerLive": self.server_live,
                "ServerReady": self.server_ready,
                "ModelReady": self.model_ready,
                "ServerMetadata": self.server_metadata,
                "ModelMetadata": self.model_metadata,
                "ModelInfer": self.model_infer,
                "ModelStreamInfer": self.model_stream_infer,
            },
            public_methods={"ServerLive", "ServerReady"},
        )

    async def server_live(self, request: pb.ServerLiveRequest, call: Call) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, call: Call
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.models.ready)

    async def model_ready(self, request: pb.ModelReadyRequest, call: Call) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._find(request.name, request.version).ready)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, call: Call
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**open_inference.server_metadata())

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, call: Call
    ) -> pb.ModelMetadataResponse:
        described = open_inference.model_metadata(self._find(request.name, request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            **{
                **described,
                "inputs": [tensor(**spec) for spec in described["inputs"]],
                "outputs": [tensor(**spec) for spec in described["outputs"]],
            }
        )

    async def model_infer(self, request: pb.ModelInferRequest, call: Call) -> pb.ModelInferResponse:
        """One answer; a streaming handler's answer is refused, as on REST."""
        scheduler, decoded, reply = await self._infer(request, call, request_id=call.request_id)
        result = open_inference.one_result(
            reply, model=scheduler.name, protocol=PROTOCOL, instead=STREAMING_CALL
        )
        return self._response(result, scheduler=scheduler, request=decoded, call_id=call.request_id)

    async def model_stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest], call: Call
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        index = 0
        async for request in requests:
            index += 1
            request_id = f"{call.request_id}-{index}"
            try:
                scheduler, decoded, reply = await self._infer(request, call, request_id=request_id)
                async for result in reply.results():
                    response = self._response(
                        open_inference.checked(result),
                        scheduler=scheduler,
                        request=decoded,
                        call_id=request_id,
                    )
                    yield pb.ModelStreamInferResponse(infer_response=response)
            except ServingError as error:
                yield pb.ModelStreamInferResponse(error_message=error.message)

    def _find(self, name: str, version: str) -> ModelScheduler:
        if not name:
            raise invalid_argument("the model's name is required")
        return self.models.find(name, version)

    async def _infer(
        self, request: pb.ModelInferRequest, call: Call, *, request_id: str
    ) -> tuple[ModelScheduler, InferRequest, Reply]:
        scheduler = self._find(request.model_name, request.model_version)
        decoded, document = messages.infer_request(request)
        parameters = open_inference.handler_parameters(
            decoded, document=document, tensor_inputs=open_inference.takes_tensors(scheduler)
        )
        reply = await scheduler.infer(
            InferenceRequest(
                request_id=request_id,
                parameters=parameters,
                headers=(*call.metadata, EXPLAIN[False]),
            )
        )
        return scheduler, decoded, reply

    def _response(
        self,
        result: PredictionResult,
        *,
        scheduler: ModelScheduler,
        request: InferRequest,
        call_id: str,
    ) -> pb.ModelInferResponse:
        check_response_size(result.body, max_size=self.max_response_size)
        answer = open_inference.inference_response(
            decode_result_body(result), scheduler=scheduler, request_id=request.id or call_id
        )
        return messages.infer_response(answer, request)
