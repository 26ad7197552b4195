"""The OpenAPI 3 description of the inference port, served at `/openapi.json`, derived from the
routes themselves.

Each handler carries its summary and body schema (`operation`); the document walks the router, so
a route cannot go undescribed (building the document fails) and a described path always has a
route. It lists the statuses each route can answer, so a schema-driven fuzzer can check that the
server never answers outside what it promises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from marserve.server.errors import ErrorFormat, error_format_for

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[web.StreamResponse]])

OBJECT: Mapping[str, Any] = {"type": "object"}
ANY_BODY: Mapping[str, Any] = {
    "content": {
        "application/json": {"schema": {}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object"}},
    }
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "type", "message"],
    "properties": {
        "code": {"type": "integer"},
        "type": {"type": "string"},
        "message": {"type": "string"},
    },
}
ERROR_STATUSES = {
    "400": "The request body is malformed",
    "401": "Missing or wrong bearer token",
    "404": "Unknown model or version",
    "413": "The body exceeds max_request_size",
    "429": "The model's queue is full; retry after Retry-After seconds",
    "500": "The server failed unexpectedly",
    "503": "The model failed to load, its worker died, or the server is stopping",
    "504": "The model did not answer within responseTimeout",
}
INFERENCE_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
SCHEMA_NAMES = {ErrorFormat.TORCHSERVE: "Error", ErrorFormat.OPEN_INFERENCE: "InferenceError"}
INFERENCE_ERRORS = ("400", "401", "404", "413", "429", "500", "503", "504")
# OpenAPI 3.0 gives a request body only to methods whose HTTP semantics define one.
BODY_METHODS = ("POST", "PUT", "PATCH")
_OPERATION = "openapi_operation"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    """What the document says about one handler: a summary, the 200 answer's schema for a GET,
    the request body of an inference call."""

    summary: str
    ok: Mapping[str, Any]
    body: Mapping[str, Any] | None


def operation(
    summary: str, *, ok: Mapping[str, Any] = OBJECT, body: Mapping[str, Any] | None = None
) -> Callable[[Handler], Handler]:
    """Describes a route handler for /openapi.json, next to its code."""

    def describe(handler: Handler) -> Handler:
        setattr(handler, _OPERATION, Operation(summary=summary, ok=ok, body=body))
        return handler

    return describe


def document(
    router: web.UrlDispatcher,
    *,
    version: str,
    error_formats: Mapping[str, ErrorFormat] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of every route on `router`; raises LookupError for a route whose
    handler was never described, so drift stops the server at start-up rather than at a user.
    Each path's errors have the body its protocol defines (`error_formats`, as the middleware)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in router.routes():
        if route.method == "HEAD":  # aiohttp's automatic twin of each GET
            continue
        path = route.resource.canonical if route.resource is not None else ""
        described: Operation | None = getattr(route.handler, _OPERATION, None)
        if described is None:
            raise LookupError(f"{route.method} {path} has no OpenAPI operation: describe its "
                              "handler with openapi.operation")  # fmt: skip
        parameters = _PATH_PARAMETER.findall(path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(
            described,
            method=route.method,
            parameters=parameters,
            error_schema=SCHEMA_NAMES[error_format_for(path, error_formats or {})],
        )
    return {
        "openapi": "3.0.3",
        "info": {"title": "marserve inference API", "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "InferenceError": INFERENCE_ERROR_SCHEMA}
        },
    }


def add_document_route(
    app: web.Application, *, version: str, error_formats: Mapping[str, ErrorFormat] | None = None
) -> None:
    """Serves /openapi.json on `app`, describing every route added before it and itself."""
    body = b""  # filled below, once the document's own route is on the router

    @operation("This OpenAPI document")
    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi_json)
    described = document(app.router, version=version, error_formats=error_formats)
    body = json.dumps(described).encode()


def _operation(
    described: Operation, *, method: str, parameters: Sequence[str], error_schema: str
) -> dict[str, Any]:
    """A GET answers its schema or 401/404/503 (404 only where a path names a model); any other
    method, or a GET whose handler describes a body (TorchServe predicts on a GET too), is an
    inference call and may answer any inference error or a status its handler chose."""
    entry: dict[str, Any] = {
        "summary": described.summary,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in parameters
        ],
    }
    if method != "GET" or described.body is not None:
        if method in BODY_METHODS:
            entry["requestBody"] = dict(described.body or ANY_BODY)
        entry["responses"] = {
            "200": {"description": "The model's answer"},
            **_errors(INFERENCE_ERRORS, schema=error_schema),
            "default": {"description": "A status the handler chose"},
        }
    else:
        ok = {"description": "OK", "content": {"application/json": {"schema": described.ok}}}
        entry["responses"] = {
            "200": ok,
            **_errors(("401", "404", "503") if parameters else ("401", "503"), schema=error_schema),
        }
    return entry


def _errors(statuses: Sequence[str], *, schema: str) -> dict[str, Any]:
    reference = {"$ref": f"#/components/schemas/{schema}"}
    return {
        status: {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": reference}},
        }
        for status in statuses
    }
