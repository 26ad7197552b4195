"""TorchServe's gRPC management API (`ManagementAPIsService`, port 7071), read-only.

DescribeModel and ListModels answer the JSON the HTTP management API answers, in `msg` as
TorchServe puts it. Registering, scaling, unregistering and choosing a default version are
refused as the HTTP API refuses them: models come from the pod spec, and an endpoint that loads
code from a URL is how TorchServe's management API became an attack path.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from marserve.grpc.listener import Call, GrpcService
from marserve.grpc.torchserve import management_pb2
from marserve.server.errors import ServingError
from marserve.server.served_models import ServedModels

REFUSED = ("RegisterModel", "ScaleWorker", "SetDefault", "UnregisterModel")


class TorchServeManagement:
    """The methods of `org.pytorch.serve.grpc.management.ManagementAPIsService`."""

    def __init__(self, models: ServedModels) -> None:
        self.models = models

    def service(self) -> GrpcService:
        return GrpcService(
            descriptor=management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"],
            methods={
                "DescribeModel": self.describe_model,
                "ListModels": self.list_models,
                **dict.fromkeys(REFUSED, self.refuse),
            },
        )

    async def describe_model(
        self, request: management_pb2.DescribeModelRequest, call: Call
    ) -> management_pb2.ManagementResponse:
        descriptions = self.models.descriptions(request.model_name, request.model_version)
        return _json(descriptions)

    async def list_models(
        self, request: management_pb2.ListModelsRequest, call: Call
    ) -> management_pb2.ManagementResponse:
        return _json(self.models.listing())

    async def refuse(self, request: Message, call: Call) -> management_pb2.ManagementResponse:
        raise ServingError(
            501,
            "Unimplemented",
            "Models come from the pod spec (the InferenceModel resource): marserve does not "
            "register, scale, unregister or switch models at run time",
        )


def _json(body: Any) -> management_pb2.ManagementResponse:
    return management_pb2.ManagementResponse(msg=json.dumps(body))
