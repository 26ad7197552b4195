"""The inference port's connections: plain predictions answered directly, the rest by aiohttp.

Most of a server's traffic is `POST /predictions/{model}` on kept-alive connections. aiohttp spends
about two thirds of the front end's CPU on such a request building and tearing down its request,
response and writer objects, so a connection starts here: a plain request (`request_head.py` says
which) is parsed with a few byte operations, handed to the model's scheduler and answered with one
write. The first request that is not plain hands the connection, with every byte not yet read, to
aiohttp's own protocol, which serves it and the rest of the connection as it serves the other
ports; a client never sees which of the two answered, except in speed.

Requests on one connection are answered in order, one at a time, as aiohttp does; bytes that
arrive meanwhile wait in the buffer, and reading pauses while more than `PIPELINE_LIMIT` wait.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import cast

from marserve.inference_request import Parameter
from marserve.results import PredictionResult
from marserve.server import response_bytes
from marserve.server.batching import Job
from marserve.server.errors import ErrorFormat, ServingError, encode_error
from marserve.server.http_io import (
    JSON,
    check_response_size,
    request_of,
    result_headers,
    stream_error_line,
)
from marserve.server.inference_dispatch import prediction_route
from marserve.server.metrics import ServerMetrics
from marserve.server.middleware import authorized, log_answer, unauthorized
from marserve.server.request_head import RequestHead, parse_head
from marserve.server.scheduler import ModelScheduler
from marserve.server.served_models import ServedModels

log = logging.getLogger("marserve.server.http")
# A head not complete within this many bytes is not plain (aiohttp answers it with 400/431).
HEAD_LIMIT = 65536
PIPELINE_LIMIT = 1 << 20
KEEPALIVE_TIMEOUT_S = 75.0  # aiohttp's default, which the other ports keep
HEADER_END = b"\r\n\r\n"


class PredictionPort:
    """What every connection of the inference port shares: the models, the auth token, the
    metrics, the limits, aiohttp's protocol for requests that are not plain, and the open
    connections, which an idle sweep closes after `keepalive_timeout_s`."""

    def __init__(
        self,
        *,
        models: ServedModels,
        metrics: ServerMetrics,
        expected_authorization: bytes | None,
        new_request_id: Callable[[], str],
        max_request_size: int,
        max_response_size: int,
        fallback: Callable[[], asyncio.Protocol],
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.expected_authorization = expected_authorization
        self.new_request_id = new_request_id
        self.max_request_size = max_request_size
        self.max_response_size = max_response_size
        self.fallback = fallback
        self.keepalive_timeout_s = keepalive_timeout_s
        self.date = response_bytes.DateHeader()
        self.connections: set[InferenceConnection] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def connection(self) -> InferenceConnection:
        """The protocol factory of the port's listening socket."""
        return InferenceConnection(self)

    def opened(self, connection: InferenceConnection) -> None:
        self.connections.add(connection)
        if self._sweep is None:
            self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweep = loop.call_later(self.keepalive_timeout_s / 4, self._close_idle)

    def _close_idle(self) -> None:
        self._sweep = None
        cutoff = asyncio.get_running_loop().time() - self.keepalive_timeout_s
        for connection in list(self.connections):
            if connection.idle_since(cutoff):
                connection.close()
        if self.connections:
            self._schedule_sweep()

    def close(self) -> None:
        """Closes idle connections now and busy ones once their answer is written."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in list(self.connections):
            connection.close_when_idle()


class InferenceConnection(asyncio.Protocol):
    """One client connection, answered here until its first request that is not plain."""

    def __init__(self, port: PredictionPort) -> None:
        self._port = port
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False
        self._paused = False
        self._closing = False
        self._last_active = self._loop.time()
        self._streaming: asyncio.Task[None] | None = None  # the loop holds tasks only weakly
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._port.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._port.connections.discard(self)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        self._buffer += data
        if not self._busy:
            self._serve_next()
        elif len(self._buffer) > PIPELINE_LIMIT and not self._paused:
            self._paused = True
            self._transport_or_fail().pause_reading()

    def idle_since(self, cutoff: float) -> bool:
        return not self._busy and self._last_active < cutoff

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def close_when_idle(self) -> None:
        if self._busy:
            self._closing = True
        else:
            self.close()

    def _transport_or_fail(self) -> asyncio.Transport:
        assert self._transport is not None, "a connection gets data only once it is made"
        return self._transport

    def _serve_next(self) -> None:
        """Starts answering the next complete request in the buffer, or hands the connection to
        aiohttp when that request is not plain."""
        buffer = self._buffer
        end = buffer.find(HEADER_END)
        if end < 0:
            if len(buffer) > HEAD_LIMIT:
                self._hand_over()
            return
        head = parse_head(bytes(buffer[:end]))
        route = prediction_route(head.method, head.target) if head is not None else None
        if head is None or route is None or head.content_length > self._port.max_request_size:
            self._hand_over()
            return
        start = end + len(HEADER_END)
        stop = start + head.content_length
        if len(buffer) < stop:
            return
        body = bytes(buffer[start:stop])
        del buffer[:stop]
        self._busy = True
        self._start(head, *route, body)

    def _hand_over(self) -> None:
        """From this request on, aiohttp's protocol owns the connection and its unread bytes."""
        transport = self._transport_or_fail()
        self._port.connections.discard(self)
        protocol = self._port.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            protocol.data_received(data)

    def _start(self, head: RequestHead, model: str, version: str | None, body: bytes) -> None:
        """Admits the request to its model's queue. Its answer is written by a callback on the
        job's outcome: a task per request would cost two more steps of the event loop."""
        port = self._port
        request_id = head.request_id or port.new_request_id()
        try:
            if not authorized(head.authorization, port.expected_authorization):
                raise unauthorized()
            scheduler = port.models.find(model, version)
            parameters = (Parameter("body", head.content_type, body),)
            job = scheduler.admit(request_of(request_id, parameters, head.headers, explain=False))
        except Exception as error:
            self._fail(head, request_id, error)
            return
        answered = functools.partial(self._answered, head, request_id, scheduler, job)
        job.outcome.add_done_callback(answered)

    def _answered(
        self,
        head: RequestHead,
        request_id: str,
        scheduler: ModelScheduler,
        job: Job,
        outcome: asyncio.Future[PredictionResult],
    ) -> None:
        try:
            first = outcome.result()
        except (Exception, asyncio.CancelledError) as error:
            scheduler.settle(job, error.status if isinstance(error, ServingError) else 500)
            self._fail(head, request_id, error)
            return
        scheduler.settle(job, first.status)
        rest = job.rest()
        try:
            self._write_first(head, request_id, first, streamed=rest is not None)
        except Exception as error:
            self._fail(head, request_id, error)
            return
        if rest is None:
            self._finish(head, request_id, first.status)
        else:
            self._streaming = self._loop.create_task(self._stream(head, request_id, first, rest))

    def _write_first(
        self, head: RequestHead, request_id: str, first: PredictionResult, *, streamed: bool
    ) -> None:
        """The status line, headers and the whole answer, or a streamed answer's first chunk."""
        port = self._port
        if not streamed:
            check_response_size(first.body, max_size=port.max_response_size)
        headers = [*result_headers(first).items(), ("X-Request-Id", request_id)]
        length = None if streamed else len(first.body)
        try:
            response = response_bytes.response_head(
                first.status, headers, length=length, keep_alive=head.keep_alive, date=port.date
            )
        except response_bytes.UnsafeHeaderError as error:
            raise ServingError(500, "InternalServerError", str(error)) from error
        self._write(response + (response_bytes.chunk(first.body) if streamed else first.body))

    async def _stream(
        self,
        head: RequestHead,
        request_id: str,
        first: PredictionResult,
        rest: AsyncIterator[PredictionResult],
    ) -> None:
        """The chunks after the first, then the last chunk. An error after the status line went
        out can only be told in the body, or, when it is not the model's, by closing."""
        try:
            async for result in rest:
                self._write(response_bytes.chunk(result.body))
                if self._writable is not None:
                    await self._writable
        except ServingError as error:
            self._write(response_bytes.chunk(stream_error_line(error)) + response_bytes.LAST_CHUNK)
        except Exception:
            log.exception("a streamed answer failed after its first chunk",
                          extra={"request_id": request_id})  # fmt: skip
            self._closing = True
        else:
            self._write(response_bytes.LAST_CHUNK)
        self._streaming = None
        self._finish(head, request_id, first.status)

    def _fail(self, head: RequestHead, request_id: str, error: BaseException) -> None:
        """Answers with the error's JSON body, or a 500 for an error that is not the user's."""
        if not isinstance(error, ServingError):
            log.exception("unhandled error in %s %s", head.method, head.target, exc_info=error,
                          extra={"request_id": request_id})  # fmt: skip
            error = ServingError(500, "InternalServerError", "Unexpected server error")
        body = encode_error(error.status, error.error_type, error.message, ErrorFormat.TORCHSERVE)
        headers = [*error.headers.items(), ("Content-Type", JSON), ("X-Request-Id", request_id)]
        response = response_bytes.response_head(
            error.status, headers, length=len(body), keep_alive=head.keep_alive,
            date=self._port.date,
        )  # fmt: skip
        self._write(response + body)
        self._finish(head, request_id, error.status)

    def _finish(self, head: RequestHead, request_id: str, status: int) -> None:
        """The answer is written: count and log it, then close, or go on with the next request
        already buffered."""
        self._port.metrics.response(status)
        log_answer(head.method, head.target.partition("?")[0], status, request_id, quiet=False)
        self._busy = False
        self._last_active = self._loop.time()
        if not head.keep_alive or self._closing:
            self.close()
            return
        if self._paused:
            self._paused = False
            self._transport_or_fail().resume_reading()
        if self._buffer:
            # In the next step, not from here: an answer written at once (an error) would
            # otherwise recurse once per pipelined request.
            self._loop.call_soon(self._serve_buffered)

    def _serve_buffered(self) -> None:
        if not self._busy and self._buffer and not self._closing:
            self._serve_next()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
