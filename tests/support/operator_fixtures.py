"""InferenceModel manifests and helpers shared by the operator's tests.

`EXAMPLE_MANIFEST` is the manifest the operator's documentation promises to accept (with a real
64-character digest where the text elides it); `manifest()` derives variants from it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import yaml

from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import ModelSpec, parse_spec

KUBERNETES_VERSION = "1.30.0"
DIGEST = "3b1f" + "0" * 60

EXAMPLE_YAML = f"""
apiVersion: serving.marserve.io/v1alpha1
kind: InferenceModel
metadata: {{name: resnet, namespace: ml}}
spec:
  archive:
    uri: https://models.example.com/resnet-2.0.mar
    sha256: {DIGEST}
  modelName: resnet
  handler: image_classifier
  batching: {{maxBatchSize: 8, maxBatchDelayMs: 5}}
  workersPerReplica: 1
  responseTimeoutSeconds: 60
  replicas: 2
  autoscaling: {{minReplicas: 1, maxReplicas: 10, metric: inflight, target: 16, engine: hpa}}
  accelerator: {{type: nvidia, count: 1}}
  resources: {{requests: {{cpu: "2", memory: 4Gi}}, limits: {{memory: 8Gi}}}}
  image: ghcr.io/marserve/worker:0.1.0
  nodeSelector: {{}}
  auth: {{tokenSecretRef: {{name: resnet-token}}}}
"""
EXAMPLE_MANIFEST: dict[str, Any] = yaml.safe_load(EXAMPLE_YAML)

# Every optional field set, so tests can reach any schema path by editing one value.
FULL_SPEC: dict[str, Any] = {
    **EXAMPLE_MANIFEST["spec"],
    "imagePullPolicy": "Always",
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
    "affinity": {"nodeAffinity": {}},
    "env": [{"name": "LOG_LEVEL", "value": "debug"}],
    "serviceAccountName": "models",
    "imagePullSecrets": [{"name": "registry"}],
    "auth": {"tokenSecretRef": {"name": "resnet-token", "key": "token"}},
    "dependencies": {
        "install": True,
        "indexUrl": "https://pypi.example.com/simple",
        "extraIndexUrl": "https://download.pytorch.org/whl/cpu",
        "secretName": "index-login",
        "timeoutSeconds": 900,
    },
    "grpc": {"enabled": True, "management": True},
    "canary": {
        "archive": {"uri": "https://models.example.com/resnet-2.1.mar", "sha256": DIGEST},
        "trafficPercent": 10,
    },
    "gatewayRef": {"name": "inference", "namespace": "gateways", "sectionName": "http"},
    "pod": {
        "labels": {"team": "vision"},
        "annotations": {"sidecar.istio.io/inject": "true"},
        "volumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "volumeMounts": [{"name": "datasets", "mountPath": "/data", "readOnly": True}],
        "envFrom": [{"configMapRef": {"name": "model-settings"}, "prefix": "APP_"}],
        "shmSize": "2Gi",
        "priorityClassName": "inference",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
    },
}

SETTINGS = OperatorSettings()


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `changes` merged in; a None value removes the key."""
    result = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def manifest(spec: Mapping[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """The example InferenceModel with its spec replaced by `spec` and/or merged with `changes`."""
    result = copy.deepcopy(EXAMPLE_MANIFEST)
    if spec is not None:
        result["spec"] = copy.deepcopy(dict(spec))
    result["spec"] = merged(result["spec"], changes)
    return result


def model(spec: Mapping[str, Any] | None = None, **changes: Any) -> ModelSpec:
    """The ModelSpec of `manifest(spec, **changes)`."""
    obj = manifest(spec, **changes)
    return parse_spec(
        name=obj["metadata"]["name"], namespace=obj["metadata"]["namespace"], spec=obj["spec"]
    )


def minimal_spec(uri: str = "https://models.example.com/m.mar") -> dict[str, Any]:
    return {"archive": {"uri": uri}}


def kube_validate(obj: Mapping[str, Any]) -> None:
    """Validates a built-in kind against the Kubernetes schemas in strict mode (unknown fields
    fail); raises kubernetes_validate.ValidationError."""
    kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)
