"""Names and labels shared by every object rendered for one InferenceModel."""

from __future__ import annotations

from typing import Any, Final

from marserve.contract import MANAGED_BY, MANAGED_BY_LABEL, METRICS_PATH, METRICS_PORT
from marserve_operator.spec import ModelSpec

SPEC_HASH_ANNOTATION: Final = "serving.marserve.io/spec-hash"
MODEL_LABEL: Final = "serving.marserve.io/model"


def labels(model: ModelSpec) -> dict[str, str]:
    """Labels on every owned object and pod, so `kubectl get all -l ...` finds a model's pieces."""
    return {
        "app.kubernetes.io/name": "marserve-worker",
        "app.kubernetes.io/instance": model.name,
        MANAGED_BY_LABEL: MANAGED_BY,
        MODEL_LABEL: model.name,
    }


def selector(model: ModelSpec) -> dict[str, str]:
    """The pods' match labels: a subset of `labels` that never changes, since Deployment
    selectors are immutable."""
    return {"app.kubernetes.io/name": "marserve-worker", "app.kubernetes.io/instance": model.name}


def scrape_annotations() -> dict[str, str]:
    """The prometheus.io annotations that annotation-driven Prometheus scrape jobs follow."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT.number),
        "prometheus.io/path": METRICS_PATH,
    }


def object_meta(model: ModelSpec, **extra: Any) -> dict[str, Any]:
    """metadata of an owned object: named after the InferenceModel, in its namespace."""
    return {"name": model.name, "namespace": model.namespace, "labels": labels(model), **extra}
