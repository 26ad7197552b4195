"""Names and labels shared by every object rendered for one InferenceModel."""

from __future__ import annotations

from typing import Any, Final

from marserve.contract import MANAGED_BY, MANAGED_BY_LABEL, METRICS_PATH, METRICS_PORT
from marserve_operator.spec import ModelSpec

SPEC_HASH_ANNOTATION: Final = "serving.marserve.io/spec-hash"
MODEL_LABEL: Final = "serving.marserve.io/model"
REVISION_LABEL: Final = "serving.marserve.io/revision"
CANARY_SUFFIX: Final = "-canary"


def object_name(model: ModelSpec) -> str:
    """The name of the revision's objects: the model's own, or NAME-canary for its canary."""
    return model.name if model.revision == "stable" else f"{model.name}{CANARY_SUFFIX}"


def labels(model: ModelSpec) -> dict[str, str]:
    """Labels on every owned object and pod, so `kubectl get all -l ...` finds a model's pieces.
    A canary's carry its revision; the stable pods' labels predate canaries and stay as they
    are, so no model rolls out for a label."""
    result = {
        "app.kubernetes.io/name": "marserve-worker",
        "app.kubernetes.io/instance": object_name(model),
        MANAGED_BY_LABEL: MANAGED_BY,
        MODEL_LABEL: model.name,
    }
    if model.revision == "canary":
        result[REVISION_LABEL] = model.revision
    return result


def selector(model: ModelSpec) -> dict[str, str]:
    """The pods' match labels: a subset of `labels` that never changes, since Deployment
    selectors are immutable. The stable and canary revisions' selectors never overlap."""
    return {
        "app.kubernetes.io/name": "marserve-worker",
        "app.kubernetes.io/instance": object_name(model),
    }


def revisions_selector(model: ModelSpec) -> dict[str, str]:
    """Labels both revisions' pods carry: a Service selecting by them splits requests between
    the revisions in proportion to their ready pods."""
    return {"app.kubernetes.io/name": "marserve-worker", MODEL_LABEL: model.name}


def scrape_annotations() -> dict[str, str]:
    """The prometheus.io annotations that annotation-driven Prometheus scrape jobs follow."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT.number),
        "prometheus.io/path": METRICS_PATH,
    }


def object_meta(model: ModelSpec, **extra: Any) -> dict[str, Any]:
    """metadata of an owned object: named after the InferenceModel, in its namespace."""
    return {
        "name": object_name(model),
        "namespace": model.namespace,
        "labels": labels(model),
        **extra,
    }
