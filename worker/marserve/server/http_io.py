"""Reading request bodies into named inputs and writing replies back, shared by every route."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from marserve.inference_request import InferenceRequest, Parameter
from marserve.responses import BINARY
from marserve.results import PredictionResult
from marserve.server.batching import Reply
from marserve.server.errors import ServingError

REQUEST_ID = web.RequestKey("request_id", str)
JSON = "application/json"
# TorchServe tells handlers which API was called with an `explain` header of its own.
EXPLAIN = {True: ("explain", "True"), False: ("explain", "False")}


async def read_parameters(request: web.Request) -> list[Parameter]:
    """Inputs as TorchServe makes them: the raw body as `body`, or one per form field.

    A plain form field comes as bytes without a content type, as TorchServe sends it, so the
    handler sees a bytearray either way. Both readers enforce the body limit (413); a form body
    that cannot be parsed is the client's mistake (400).
    """
    parameters: list[Parameter] = []
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError) as error:  # bad boundary, headers or fields
            raise ServingError(400, "BadRequest", f"Malformed form body: {error}") from error
        for name, field in form.items():
            if isinstance(field, web.FileField):
                parameters.append(Parameter(name, field.content_type, field.file.read()))
            else:
                parameters.append(Parameter(name, "", str(field).encode()))
        return parameters
    body = await request.read()
    parameters.append(Parameter("body", request.headers.get("Content-Type", ""), body))
    return parameters


def json_parameter(name: str, value: Any) -> Parameter:
    """One input holding a JSON value, serialised once here for the handler to parse."""
    return Parameter(name, JSON, json.dumps(value).encode())


def inference_request(
    request: web.Request,
    parameters: Sequence[Parameter],
    *,
    explain: bool,
    request_id: str | None = None,
) -> InferenceRequest:
    """The typed request a scheduler takes: these inputs with the call's id and HTTP headers."""
    return request_of(
        request_id or request[REQUEST_ID], parameters, request.headers.items(), explain=explain
    )


def request_of(
    request_id: str,
    parameters: Sequence[Parameter],
    headers: Iterable[tuple[str, str]],
    *,
    explain: bool,
) -> InferenceRequest:
    """An `InferenceRequest` from its parts; handlers also see which API was called."""
    return InferenceRequest(
        request_id=request_id, parameters=tuple(parameters), headers=(*headers, EXPLAIN[explain])
    )


def parse_json(body: bytes) -> Any:
    """Decodes a JSON request body or raises 400 with what was wrong."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ServingError(400, "BadRequest", f"Request body is not valid JSON: {error}") from error


def decode_result_body(result: PredictionResult) -> Any:
    """A handler's answer as a JSON value: parsed when it is JSON, text otherwise."""
    if "json" in result.content_type or not result.content_type:
        try:
            return json.loads(result.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
    return result.body.decode(errors="replace")


def check_response_size(body: bytes, *, max_size: int) -> None:
    """Refuses a model's answer above max_response_size (500), for every protocol alike."""
    if len(body) > max_size:
        raise ServingError(
            500,
            "ResponseTooLarge",
            f"The model's response ({len(body)} bytes) exceeds max_response_size "
            f"({max_size} bytes)",
        )


def result_headers(result: PredictionResult) -> dict[str, str]:
    """The headers a handler's answer goes out with: its own, and its content type (bytes of no
    stated type are `application/octet-stream`)."""
    headers = dict(result.headers)
    headers["Content-Type"] = result.content_type or BINARY
    return headers


def result_response(result: PredictionResult, *, max_size: int) -> web.Response:
    check_response_size(result.body, max_size=max_size)
    return web.Response(status=result.status, body=result.body, headers=result_headers(result))


async def reply_response(
    request: web.Request, reply: Reply, *, max_size: int
) -> web.StreamResponse:
    """A reply as HTTP: one response, or HTTP/1.1 chunked output with one chunk per result.

    A stream cut short (the worker died, the deadline passed) ends with `stream_error_line`.
    """
    first = reply.first
    if reply.rest is None:
        return result_response(first, max_size=max_size)
    response = web.StreamResponse(status=first.status, headers=result_headers(first))
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(first.body)
    try:
        async for result in reply.rest:
            await response.write(result.body)
    except ServingError as error:
        await response.write(stream_error_line(error))
    await response.write_eof()
    return response


def stream_error_line(error: ServingError) -> bytes:
    """The last line of a streamed answer cut short: its status line has already gone out."""
    return f'\n{{"error": {json.dumps(error.message)}}}\n'.encode()
