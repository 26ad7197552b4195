"""One gRPC port: its services, and what every call on it passes through.

A service is a .proto service descriptor and the async methods that implement its RPCs; a port
serves any number of them (TorchServe's inference API on 7070 today, the Open Inference
Protocol's `GRPCInferenceService` beside it tomorrow) from a `grpc.aio` server in the front end's
own event loop, so gRPC calls share the HTTP routes' queues, batching and workers.

Every call, whatever its service, gets what the HTTP middleware gives a request: a request id
(`x-request-id` metadata, or a new one, returned in the trailing metadata), the bearer-token check
(`authorization` metadata), the client's deadline as an upper bound, `ServingError`s turned into
status codes by `status.grpc_code`, and TorchServe's Requests2XX/4XX/5XX counted by the call's
HTTP-equivalent status. Requests arrive as bytes and are parsed here, so a message that is not
what the method takes, or that carries fields this server does not know, is INVALID_ARGUMENT
with the reason, never a bare INTERNAL from the deserializer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.unknown_fields import UnknownFieldSet

from marserve.grpc.status import grpc_code, invalid_argument
from marserve.server.errors import ServingError
from marserve.server.metrics import ServerMetrics
from marserve.server.middleware import authorized, expected_authorization, request_ids

log = logging.getLogger("marserve.server.grpc")

REQUEST_ID_KEY = "x-request-id"
DEADLINE_MARGIN_S = 0.02
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """What a service method knows of its call besides the request: its id and its metadata
    (text entries only), which reach handlers as the HTTP headers of a request do."""

    request_id: str
    metadata: tuple[tuple[str, str], ...]


# A method answers one response (unary) or yields several (server streaming); a client-streaming
# method takes the parsed requests as an async iterator.
RpcMethod = Callable[[Any, Call], Awaitable[Message] | AsyncIterator[Message]]


@dataclass(frozen=True)
class GrpcService:
    """A .proto service and the methods implementing its RPCs, by RPC name. An RPC without a
    method answers UNIMPLEMENTED (gRPC's own answer); those in `public_methods` need no token."""

    descriptor: ServiceDescriptor
    methods: Mapping[str, RpcMethod]
    public_methods: Collection[str] = field(default_factory=frozenset)


class GrpcListener:
    """A `grpc.aio` server for one port and its services, started and stopped with the server."""

    def __init__(
        self,
        services: Sequence[GrpcService],
        *,
        metrics: ServerMetrics,
        token: bytes | None,
        max_receive_size: int,
    ) -> None:
        self._metrics = metrics
        self._expected = expected_authorization(token)
        self._new_request_id = request_ids()
        # Sizes as the HTTP body limit; no SO_REUSEPORT, so a port in use fails as HTTP's does.
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_receive_size),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        self._server.add_generic_rpc_handlers([self._handler(service) for service in services])

    async def start(self, host: str, port: int) -> int:
        """Binds and starts serving; returns the bound port. A port that cannot be bound is an
        OSError, as it is for the HTTP ports."""
        try:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as error:
            raise OSError(f"cannot listen for gRPC on {host}:{port}: {error}") from error
        await self._server.start()
        return bound

    async def stop(self, grace_s: float) -> None:
        """Refuses new calls and lets calls in flight finish for up to `grace_s`."""
        await self._server.stop(grace_s)

    def _handler(self, service: GrpcService) -> grpc.GenericRpcHandler:
        handlers = {
            method.name: self._method_handler(
                method, implementation, public=method.name in service.public_methods
            )
            for method in service.descriptor.methods
            if (implementation := service.methods.get(method.name)) is not None
        }
        return grpc.method_handlers_generic_handler(service.descriptor.full_name, handlers)

    def _method_handler(
        self, method: MethodDescriptor, implementation: RpcMethod, *, public: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        request_class = GetMessageClass(method.input_type)
        serialize = GetMessageClass(method.output_type).SerializeToString
        body = _streaming(implementation, method)
        rpc = method.full_name
        if method.client_streaming and not method.server_streaming:
            raise ValueError(f"{rpc}: client streaming with one response is not supported")

        # Async generator functions: grpc.aio tells streaming handlers by that. Requests are
        # parsed inside the guard, so a bad message is answered and counted as any failure is.
        async def responses(requests: Any, context: Context) -> AsyncIterator[Message]:
            read = functools.partial(_parse_each, request_class, requests)
            async for answer in self._guarded(body, read, context, rpc=rpc, public=public):
                yield answer

        async def one_request(data: bytes, context: Context) -> AsyncIterator[Message]:
            read = functools.partial(_parse, request_class, data)
            async for answer in self._guarded(body, read, context, rpc=rpc, public=public):
                yield answer

        async def unary(data: bytes, context: Context) -> Message:
            answers = [answer async for answer in one_request(data, context)]
            return answers[0]

        if method.client_streaming:
            return grpc.stream_stream_rpc_method_handler(responses, response_serializer=serialize)
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(one_request, response_serializer=serialize)
        return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serialize)

    async def _guarded(
        self,
        body: Callable[[Any, Call], AsyncIterator[Message]],
        read_request: Callable[[], Any],
        context: Context,
        *,
        rpc: str,
        public: bool,
    ) -> AsyncIterator[Message]:
        """Runs one call's method under the checks every call passes, and ends it with the status
        its failure maps to."""
        metadata = tuple(
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        )
        given = dict(metadata)
        request_id = given.get(REQUEST_ID_KEY) or self._new_request_id()
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        failure: ServingError | None = None
        try:
            if not public and not authorized(given.get("authorization", ""), self._expected):
                raise ServingError(
                    401, "Unauthorized", "Missing or wrong 'authorization: Bearer' metadata"
                )
            request = read_request()
            deadline = asyncio.timeout(_remaining(context))
            try:
                async with deadline:
                    async for response in body(request, Call(request_id, metadata)):
                        yield response
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise ServingError(
                    504, "DeadlineExceeded", "The call's deadline passed before its answer"
                ) from None
        except ServingError as error:
            failure = error
        except Exception:
            log.exception("unhandled error in %s", rpc, extra={"request_id": request_id})
            failure = ServingError(500, "InternalServerError", "Unexpected server error")
        self._metrics.response(failure.status if failure else 200)
        if failure is not None:
            if failure.status >= 500:
                log.warning("%s -> %s: %s", rpc, grpc_code(failure).name, failure.message,
                            extra={"request_id": request_id})  # fmt: skip
            await context.abort(grpc_code(failure), failure.message)


def _remaining(context: Context) -> float | None:
    """Seconds left before the client's deadline, less a margin so the server ends the call
    itself (answered, logged and counted) just before gRPC would cancel it; None when the client
    set no deadline."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:
        return None
    return max(0.0, remaining - DEADLINE_MARGIN_S)


def _parse(message_class: type[Message], data: bytes) -> Message:
    name = message_class.DESCRIPTOR.full_name
    try:
        message = message_class.FromString(data)
    except DecodeError as error:
        raise invalid_argument(f"The request is not a valid {name}: {error}") from None
    fields = UnknownFieldSet(message)
    unknown = sorted({fields[index].field_number for index in range(len(fields))})
    if unknown:
        raise invalid_argument(
            f"{name} has no fields numbered {unknown}; check the client's .proto"
        )
    return message


async def _parse_each(message_class: type[Message], requests: Any) -> AsyncIterator[Message]:
    async for data in requests:
        yield _parse(message_class, data)


def _streaming(
    implementation: RpcMethod, method: MethodDescriptor
) -> Callable[[Any, Call], AsyncIterator[Message]]:
    """A method as an async iterator of responses, whichever of the two shapes it has."""
    if method.server_streaming:
        return implementation  # type: ignore[return-value]

    async def one(request: Any, call: Call) -> AsyncIterator[Message]:
        yield await cast(Awaitable[Message], implementation(request, call))

    return one
