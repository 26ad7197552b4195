"""/openapi.json is derived from the inference port's routes, so it cannot drift from them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from marserve.server import openapi
from marserve.server.app import Server
from marserve.server.config import ServerConfig

INFERENCE_OPERATIONS = {
    ("get", "/ping"),
    *(
        (method, f"/{kind}/{{model}}{version}")
        for method in ("post", "put", "patch", "get", "delete")
        for kind in ("predictions", "explanations")
        for version in ("", "/{version}")
    ),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("post", "/v1/models/{model}:predict"),
    ("post", "/v1/models/{model}:explain"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{model}"),
    ("get", "/v2/models/{model}/ready"),
    ("post", "/v2/models/{model}/infer"),
    ("get", "/v2/models/{model}/versions/{version}"),
    ("get", "/v2/models/{model}/versions/{version}/ready"),
    ("post", "/v2/models/{model}/versions/{version}/infer"),
    ("get", "/openapi.json"),
}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


async def served_document(app: web.Application) -> dict[str, Any]:
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/openapi.json")
        assert response.status == 200
        document: dict[str, Any] = json.loads(await response.read())
        return document


async def test_the_document_lists_every_inference_route_and_nothing_else() -> None:
    inference, _ = Server(ServerConfig(), [])._apps()["inference"]
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in inference.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    document = await served_document(inference)
    assert operations(document) == routes == INFERENCE_OPERATIONS
    infer = document["paths"]["/v2/models/{model}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["model", "version"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["required"] == ["inputs"]
    assert set(infer["responses"]) >= {"200", "400", "429", "504", "default"}
    assert set(document["paths"]["/v2/health/live"]["get"]["responses"]) == {"200", "401", "503"}
    assert "application/octet-stream" in infer["requestBody"]["content"]
    upload = document["paths"]["/predictions/{model}"]["put"]
    assert "requestBody" in upload and set(upload["responses"]) >= {"200", "429", "504"}
    bodiless = document["paths"]["/predictions/{model}/{version}"]["get"]
    assert "requestBody" not in bodiless and set(bodiless["responses"]) >= {"200", "429", "504"}


def error_schema(operation: dict[str, Any], status: str) -> Any:
    return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]


async def test_each_route_documents_its_protocols_error_body() -> None:
    inference, _ = Server(ServerConfig(), [])._apps()["inference"]
    document = await served_document(inference)
    paths = document["paths"]
    assert error_schema(paths["/v2/models/{model}/infer"]["post"], "400").endswith(
        "/InferenceError"
    )
    assert error_schema(paths["/v2"]["get"], "401").endswith("/InferenceError")
    assert error_schema(paths["/predictions/{model}"]["post"], "400").endswith("/Error")
    assert document["components"]["schemas"]["InferenceError"]["required"] == ["error"]


async def test_a_route_without_a_description_stops_the_document() -> None:
    @openapi.operation("Described")
    async def described(request: web.Request) -> web.Response:
        return web.Response()

    async def undescribed(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/described/{model}", described)
    assert operations(openapi.document(app.router, version="1")) == {("get", "/described/{model}")}
    app.router.add_post("/undescribed", undescribed)
    with pytest.raises(LookupError, match="POST /undescribed has no OpenAPI operation"):
        openapi.document(app.router, version="1")
