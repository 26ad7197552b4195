"""Scale from zero: a model with minReplicas 0 is scaled by the KEDA HTTP add-on, whose
HTTPScaledObject the operator owns, validated against the add-on's published schema; without
the add-on's API the model says what to install; the status says where to send requests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from marserve.contract import INFERENCE_PORT
from marserve_operator import cluster, resources, status
from marserve_operator.settings import OperatorSettings
from support import crd_schema
from support.operator_fixtures import SETTINGS, model
from support.operator_harness import model_path
from support.reconcile_driver import converge, create_model
from support.running_emulator import RunningEmulator

HTTP_SCALED_OBJECTS = "/apis/http.keda.sh/v1alpha1/namespaces/ml/httpscaledobjects"
SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/namespaces/ml/scaledobjects"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
FROM_ZERO = {"engine": "keda", "minReplicas": 0, "maxReplicas": 4, "metric": "inflight"}


def _from_zero(**autoscaling: Any) -> Any:
    return model(autoscaling={**FROM_ZERO, **autoscaling})


def _scaled(**autoscaling: Any) -> dict[str, Any]:
    scaler = resources.autoscaler(_from_zero(**autoscaling), SETTINGS)
    assert scaler is not None
    assert crd_schema.published_errors(crd_schema.HTTP_SCALED_OBJECT_CRD, scaler) == []
    return scaler


def test_min_replicas_zero_is_scaled_by_the_http_add_on() -> None:
    scaler = _scaled(target=16, scaleDownStabilizationSeconds=600)
    assert (scaler["apiVersion"], scaler["kind"]) == ("http.keda.sh/v1alpha1", "HTTPScaledObject")
    assert scaler["spec"] == {
        "hosts": ["resnet.ml.svc"],
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "resnet",
            "service": "resnet",
            "port": INFERENCE_PORT.number,
        },
        "replicas": {"min": 0, "max": 4},
        "scaledownPeriod": 600,
        "scalingMetric": {"concurrency": {"targetValue": 16}},
    }
    assert "replicas" not in resources.deployment(_from_zero(), SETTINGS)["spec"]


@pytest.mark.parametrize(
    ("autoscaling", "metric"),
    [
        ({"metric": "inflight", "target": 2.5}, {"concurrency": {"targetValue": 3}}),
        # Queue depth 2 beside a full batch (8) on the one worker: 10 requests in flight.
        ({"metric": "queueDepth", "target": 2}, {"concurrency": {"targetValue": 10}}),
        (
            {"metric": "requestsPerSecond", "target": 40},
            {"requestRate": {"targetValue": 40, "window": "1m", "granularity": "1s"}},
        ),
    ],
    ids=["inflight", "queueDepth", "requestsPerSecond"],
)
def test_each_metric_becomes_the_add_ons_scaling_metric(
    autoscaling: dict[str, Any], metric: dict[str, Any]
) -> None:
    assert _scaled(**autoscaling)["spec"]["scalingMetric"] == metric


def test_published_schema_catches_what_the_add_on_would_refuse() -> None:
    broken = _scaled()
    del broken["spec"]["scaleTargetRef"]["port"]
    broken["spec"]["replicas"]["minimum"] = 0
    errors = crd_schema.published_errors(crd_schema.HTTP_SCALED_OBJECT_CRD, broken)
    assert any("minimum" in error for error in errors)
    assert "must define either the 'portName' or the 'port'" in errors


def test_models_that_keep_a_pod_are_not_behind_the_add_on() -> None:
    kept = model(autoscaling={**FROM_ZERO, "minReplicas": 1})
    assert not resources.scales_from_zero(kept)
    scaler = resources.autoscaler(kept, SETTINGS)
    assert scaler is not None and scaler["kind"] == "ScaledObject"


def _status(*, missing: bool) -> dict[str, Any]:
    m = _from_zero()
    return status.build_status(
        model=m,
        deployment=None,
        pods=[],
        previous={},
        now="2026-11-22T01:00:00Z",
        url=resources.interceptor_url(m, SETTINGS),
        selector="app=m",
        request_host=resources.request_host(m),
        http_add_on_missing=missing,
    )


def test_status_names_the_interceptor_and_the_host_header() -> None:
    result = _status(missing=False)
    assert result["url"] == (
        "http://keda-add-ons-http-interceptor-proxy.keda.svc:8080/predictions/resnet"
    )
    assert result["host"] == "resnet.ml.svc"
    scaling = next(c for c in result["conditions"] if c["type"] == "ScalingActive")
    assert (scaling["status"], scaling["reason"]) == ("True", "AutoscalerConfigured")
    assert "Host: resnet.ml.svc" in scaling["message"]


def test_status_says_what_to_install_without_the_add_on() -> None:
    scaling = next(c for c in _status(missing=True)["conditions"] if c["type"] == "ScalingActive")
    assert (scaling["status"], scaling["reason"]) == ("False", "HTTPAddOnMissing")
    assert "kedacore/keda-add-ons-http" in scaling["message"]
    assert "HTTPAddOnMissing" in status.WARNING_REASONS


# --- through the emulated API server ------------------------------------------------------------


def _scaling_condition(outcome: Any) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == "ScalingActive")


async def test_without_the_add_on_the_model_says_so_and_creates_no_scaler(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    create_model(api, "idle", autoscaling=FROM_ZERO)
    outcome = await converge(api, client, "idle")
    assert _scaling_condition(outcome)["reason"] == "HTTPAddOnMissing"
    assert sorted(outcome.actions) == ["created Deployment", "created Service"]
    assert api.get(f"{SCALED_OBJECTS}/idle") is None


async def test_with_the_add_on_the_model_owns_its_http_scaled_object(
    api: RunningEmulator, client: cluster.Cluster
) -> None:
    published = yaml.safe_load(crd_schema.HTTP_SCALED_OBJECT_CRD.read_text())
    api.request("POST", CRDS, published)  # the emulator serves a CRD once it is created
    settings = OperatorSettings(http_add_on_interceptor="interceptor.keda-http.svc:8080")
    create_model(api, "wakes", autoscaling=FROM_ZERO)
    outcome = await converge(api, client, "wakes", settings)
    assert "created HTTPScaledObject" in outcome.actions
    scaler = api.get(f"{HTTP_SCALED_OBJECTS}/wakes")
    assert scaler is not None
    assert scaler["metadata"]["ownerReferences"][0]["name"] == "wakes"
    assert scaler["spec"]["scaleTargetRef"]["service"] == "wakes"
    assert outcome.status["url"] == "http://interceptor.keda-http.svc:8080/predictions/wakes"
    assert outcome.status["host"] == "wakes.ml.svc"
    assert _scaling_condition(outcome)["reason"] == "AutoscalerConfigured"
    assert api.get(f"{SCALED_OBJECTS}/wakes") is None

    api.request("PATCH", model_path("wakes"), {"spec": {"autoscaling": {"minReplicas": 1}}})
    kept = await converge(api, client, "wakes", settings)
    assert "deleted HTTPScaledObject" in kept.actions
    assert "created ScaledObject" in kept.actions
    assert api.get(f"{HTTP_SCALED_OBJECTS}/wakes") is None
    stored = (api.get(model_path("wakes")) or {})["status"]
    assert stored["url"] == f"http://wakes.ml.svc:{INFERENCE_PORT.number}/predictions/wakes"
    assert "host" not in stored
