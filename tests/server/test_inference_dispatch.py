"""Which requests the inference port answers on its hot path, and with which model and version.

Everything else goes to the aiohttp application; tests/server/test_inference_api.py and
tests/reliability check that both paths answer alike.
"""

from __future__ import annotations

import functools

import pytest

from marserve.server.inference_dispatch import HotRoutes, hot_handler
from marserve.server.routes_inference import InferenceRoutes
from marserve.server.routes_v2 import V2Routes
from marserve.server.served_models import ServedModels

MODELS = ServedModels({})
INFERENCE = InferenceRoutes(MODELS, max_response_size=1)
V2 = V2Routes(MODELS, max_response_size=1)
ROUTES = HotRoutes(inference=INFERENCE, v2=V2, middleware=lambda request, handler: handler(request))


@pytest.mark.parametrize(
    ("method", "raw_path", "target", "model", "version"),
    [
        ("POST", "/predictions/mlp", INFERENCE.predict, "mlp", None),
        ("PUT", "/predictions/mlp/2.0?x=1", INFERENCE.predict, "mlp", "2.0"),
        ("GET", "/predictions/m-1_a.b", INFERENCE.predict, "m-1_a.b", None),
        ("POST", "/v2/models/mlp/infer", V2.infer_model, "mlp", None),
        ("POST", "/v2/models/mlp/versions/1.0/infer", V2.infer_model, "mlp", "1.0"),
    ],
)
def test_hot_routes_bind_model_and_version(
    method: str, raw_path: str, target: object, model: str, version: str | None
) -> None:
    handler = hot_handler(method, raw_path, ROUTES)
    assert isinstance(handler, functools.partial)
    assert handler.func == target
    assert handler.keywords == {"model": model, "version": version}


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("OPTIONS", "/predictions/mlp"),  # not a prediction method: the router's 405
        ("POST", "/predictions/a:b"),  # not a model name the router accepts
        ("POST", "/predictions/m%6Cp"),  # percent-escapes are the router's to decode
        ("POST", "/predictions/mlp/../ping"),  # dot segments are collapsed by the router
        ("POST", "/predictions/mlp/"),
        ("POST", "/predictions//mlp"),
        ("POST", "/predictions/mlp/1/2"),
        ("POST", "/predictions"),
        ("GET", "/v2/models/mlp/infer"),
        ("POST", "/v2/models/mlp/ready"),
        ("POST", "/v2/models/mlp/other/1.0/infer"),
        ("POST", "/v2/models/{mlp}/infer"),
        ("POST", "/explanations/mlp"),
        ("GET", "/ping"),
        ("POST", "http://host/predictions/mlp"),
    ],
)
def test_anything_else_goes_to_the_application(method: str, raw_path: str) -> None:
    assert hot_handler(method, raw_path, ROUTES) is None
