"""The OpenAPI 3 description of the inference port, served at `/openapi.json`.

It lists every route with the statuses it can answer, so a schema-driven fuzzer can check that the
server never answers outside what it promises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
ANY_BODY = {
    "content": {
        "application/json": {"schema": {}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object"}},
    }
}


def _errors(statuses: Sequence[str]) -> dict[str, Any]:
    return {
        status: {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _post(summary: str, path_params: Sequence[str], *, body: dict[str, Any]) -> dict[str, Any]:
    inference_errors = ("400", "401", "404", "413", "429", "500", "503", "504")
    return {
        "post": {
            "summary": summary,
            "parameters": [_param(p) for p in path_params],
            "requestBody": body,
            "responses": {"200": {"description": "The model's answer"}, **_errors(inference_errors)}
            | {"default": {"description": "A status the handler chose"}},
        }
    }


def _get(summary: str, path_params: Sequence[str], *, ok: dict[str, Any]) -> dict[str, Any]:
    errors = ("401", "404", "503") if path_params else ("401", "503")
    return {
        "get": {
            "summary": summary,
            "parameters": [_param(p) for p in path_params],
            "responses": {"200": ok, **_errors(errors)},
        }
    }


def inference_document(version: str) -> dict[str, Any]:
    """The OpenAPI document for the inference port."""
    v2_body = {"content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"],
        "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "datatype": {"type": "string"}, "data": {"type": "array"}}}}}}}},
        "required": True}  # fmt: skip
    v1_body = {"content": {"application/json": {"schema": {
        "type": "object", "required": ["instances"],
        "properties": {"instances": {"type": "array"}}}}}, "required": True}  # fmt: skip
    m, mv = ("model",), ("model", "version")
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    paths: dict[str, Any] = {
        "/ping": _get("Healthy when every model has a ready worker", (), ok=_json(status)),
        "/predictions/{model}": _post("Predict with a model", m, body=ANY_BODY),
        "/predictions/{model}/{version}": _post("Predict with a model version", mv, body=ANY_BODY),
        "/explanations/{model}": _post("Explain a prediction", m, body=ANY_BODY),
        "/explanations/{model}/{version}": _post("Explain with a version", mv, body=ANY_BODY),
        "/v1/models": _get("KServe v1 model list", (), ok=_json({"type": "object"})),
        "/v1/models/{model}": _get("KServe v1 model readiness", m, ok=_json({"type": "object"})),
        "/v1/models/{model}:predict": _post("KServe v1 predict", m, body=v1_body),
        "/v1/models/{model}:explain": _post("KServe v1 explain", m, body=v1_body),
        "/v2": _get("Server metadata", (), ok=_json({"type": "object"})),
        "/v2/health/live": _get("Liveness", (), ok=_json({"type": "object"})),
        "/v2/health/ready": _get("Readiness", (), ok=_json({"type": "object"})),
    }
    for base, params in (("/v2/models/{model}", m), ("/v2/models/{model}/versions/{version}", mv)):
        paths[base] = _get("Model metadata", params, ok=_json({"type": "object"}))
        paths[f"{base}/ready"] = _get("Model readiness", params, ok=_json({"type": "object"}))
        paths[f"{base}/infer"] = _post("Open Inference Protocol infer", params, body=v2_body)
    return {
        "openapi": "3.0.3",
        "info": {"title": "marserve inference API", "version": version},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
