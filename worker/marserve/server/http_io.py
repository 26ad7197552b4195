"""Reading request bodies into named inputs and writing results back, shared by every route."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from marserve.inference_request import Parameter
from marserve.results import PredictionResult
from marserve.server.batching import Job, StreamEnd, StreamStart
from marserve.server.errors import ServingError

REQUEST_ID = web.RequestKey("request_id", str)


async def read_parameters(request: web.Request) -> list[Parameter]:
    """Inputs as TorchServe makes them: the raw body as `body`, or one per multipart form field.

    Query parameters become inputs too, as in TorchServe. Both readers enforce the body limit (413);
    a form body that cannot be parsed is the client's mistake (400).
    """
    parameters: list[Parameter] = [
        Parameter(key, "text/plain", value.encode()) for key, value in request.query.items()
    ]
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError) as error:  # bad boundary, headers or fields
            raise ServingError(400, "BadRequest", f"Malformed form body: {error}") from error
        for name, field in form.items():
            if isinstance(field, web.FileField):
                parameters.append(Parameter(name, field.content_type, field.file.read()))
            else:
                parameters.append(Parameter(name, "text/plain", str(field).encode()))
        return parameters
    body = await request.read()
    parameters.append(Parameter("body", request.headers.get("Content-Type", ""), body))
    return parameters


def request_headers(request: web.Request, *, explain: bool) -> list[tuple[str, str]]:
    headers = list(request.headers.items())
    headers.append(("explain", "True" if explain else "False"))
    return headers


async def read_json(request: web.Request) -> Any:
    """Decodes a JSON body or raises 400 with what was wrong."""
    body = await request.read()
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ServingError(400, "BadRequest", f"Request body is not valid JSON: {error}") from error


def result_response(result: PredictionResult, *, max_size: int) -> web.Response:
    if len(result.body) > max_size:
        raise ServingError(
            500,
            "ResponseTooLarge",
            f"The model's response ({len(result.body)} bytes) exceeds max_response_size "
            f"({max_size} bytes)",
        )
    headers = dict(result.headers)
    headers["Content-Type"] = result.content_type or "application/octet-stream"
    return web.Response(status=result.status, body=result.body, headers=headers)


async def stream_response(
    request: web.Request, *, start: StreamStart, job: Job
) -> web.StreamResponse:
    """Writes a streamed answer as HTTP/1.1 chunked output, one chunk per intermediate result."""
    first = start.first
    response = web.StreamResponse(status=first.status, headers=dict(first.headers))
    response.headers["Content-Type"] = first.content_type or "application/octet-stream"
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(first.body)
    assert job.stream is not None
    while not isinstance(item := await job.stream.get(), BaseException):
        await response.write(item.body)
    if not isinstance(item, StreamEnd):
        await response.write(f'\n{{"error": {json.dumps(str(item))}}}\n'.encode())
    await response.write_eof()
    return response
