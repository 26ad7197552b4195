"""The InferenceModel CRD: a valid Kubernetes object whose schema accepts the documented manifest
and rejects each invalid value.

Enums, bounds and patterns are checked with jsonschema on the translated openAPIV3Schema. CEL
rules (`x-kubernetes-validations`) are enforced by the API server; here each rule is evaluated
with cel-python and, because older clusters skip CEL, the same intent is checked on
`parse_spec`, the operator's mirror of those rules. `CEL_CASES` must cover every rule.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from marserve.contract import OPERATOR_MANAGED_WORKER_ENV
from marserve_operator.spec import SpecError, parse_spec
from support import crd_schema
from support.operator_fixtures import EXAMPLE_MANIFEST, FULL_SPEC, kube_validate, manifest

CRD = crd_schema.load_crd()
SCHEMA = crd_schema.openapi_schema(CRD)
SPEC_SCHEMA = SCHEMA["properties"]["spec"]


def parse(obj: dict[str, Any]) -> None:
    metadata = obj["metadata"]
    parse_spec(name=metadata["name"], namespace=metadata["namespace"], spec=obj["spec"])


def changed(changes: dict[str, Any]) -> dict[str, Any]:
    """The example manifest with `changes` merged into its spec; a `metadata` entry replaces
    metadata fields instead."""
    changes = dict(changes)
    obj = manifest(**{k: v for k, v in changes.items() if k != "metadata"})
    obj["metadata"].update(changes.get("metadata", {}))
    return obj


def with_value(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `spec` with the field at `path` ('[]' = first list item) set to `value`."""
    result = copy.deepcopy(spec)
    node = result
    for segment in path[:-1]:
        node = node[0] if segment == "[]" else node.setdefault(segment, {})
    node[path[-1]] = value
    return result


# --- the CRD object itself -------------------------------------------------------------------


def test_crd_is_a_valid_kubernetes_object() -> None:
    kube_validate(CRD)


def test_names_scope_and_version() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "inferencemodels.serving.marserve.io"
    assert spec["group"] == "serving.marserve.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "InferenceModel"
    assert spec["names"]["plural"] == "inferencemodels"
    assert spec["names"]["shortNames"] == ["im"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]


def test_status_and_scale_subresources() -> None:
    (version,) = CRD["spec"]["versions"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns_point_at_status_fields() -> None:
    (version,) = CRD["spec"]["versions"]
    columns = {c["name"].upper(): c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["READY", "REPLICAS", "PHASE", "URL", "AGE"]
    status_fields = set(SCHEMA["properties"]["status"]["properties"])
    for name, path in columns.items():
        if name != "AGE":
            assert path.removeprefix(".status.") in status_fields, name


def test_every_default_satisfies_its_own_schema() -> None:
    checked = 0
    for path, node in crd_schema.walk(SCHEMA):
        if "default" in node:
            validator = crd_schema.jsonschema.Draft202012Validator(crd_schema.to_json_schema(node))
            assert not list(validator.iter_errors(node["default"])), path
            checked += 1
    assert checked >= 10


# --- accepted manifests --------------------------------------------------------------------


def test_documented_manifest_is_accepted() -> None:
    assert crd_schema.errors(CRD, EXAMPLE_MANIFEST) == []
    assert crd_schema.cel_violations(CRD, EXAMPLE_MANIFEST) == []
    parse(EXAMPLE_MANIFEST)


def test_every_optional_field_together_is_accepted() -> None:
    obj = manifest(spec=FULL_SPEC)
    assert crd_schema.errors(CRD, obj) == []
    assert crd_schema.cel_violations(CRD, obj) == []
    parse(obj)


def test_status_written_by_the_operator_is_kept() -> None:
    status = {
        "phase": "Ready",
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "2 of 2 pods ready",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "observedGeneration": 3,
        "replicas": 2,
        "readyReplicas": 2,
        "selector": "app.kubernetes.io/instance=resnet,app.kubernetes.io/name=marserve-worker",
        "url": "http://resnet.ml.svc.cluster.local:8080/predictions/resnet",
        "modelVersion": "2.0",
        "kopf": {"progress": {"reconcile": {"retries": 1}}},
    }
    assert crd_schema.errors(CRD, {**EXAMPLE_MANIFEST, "status": status}) == []
    bad = {**EXAMPLE_MANIFEST, "status": {**status, "phase": "Sleeping", "extra": 1}}
    assert len(crd_schema.errors(CRD, bad)) == 2


def test_minimal_manifest_gets_the_same_defaults_from_crd_and_parse_spec() -> None:
    minimal = manifest(
        spec={
            "archive": {"uri": "https://models.example.com/m.mar"},
            "autoscaling": {"maxReplicas": 3},
            "accelerator": {"type": "nvidia"},
            "auth": {"tokenSecretRef": {"name": "t"}},
        }
    )
    defaulted = crd_schema.apply_defaults(SCHEMA, minimal)
    assert defaulted["spec"]["batching"] == {"maxBatchSize": 1, "maxBatchDelayMs": 100}
    assert defaulted["spec"]["autoscaling"]["engine"] == "hpa"
    assert defaulted["spec"]["accelerator"] == {"type": "nvidia", "count": 1}
    assert defaulted["spec"]["auth"]["tokenSecretRef"]["key"] == "token"
    assert defaulted["spec"]["dependencies"] == {"install": False, "timeoutSeconds": 600}
    minimal["spec"]["grpc"] = {}
    assert crd_schema.apply_defaults(SCHEMA, minimal)["spec"]["grpc"] == {
        "enabled": False,
        "management": False,
    }
    from_crd = parse_spec(name="m", namespace="ns", spec=defaulted["spec"])
    from_parser = parse_spec(name="m", namespace="ns", spec=minimal["spec"])
    assert from_crd == from_parser


def test_unknown_fields_are_rejected_not_pruned_silently() -> None:
    obj = manifest(batching={"maxBatchSize": 4, "maxBatchWait": 10}, replica=3)
    found = crd_schema.errors(CRD, obj)
    assert any("maxBatchWait" in e for e in found)
    assert any("'replica'" in e for e in found)


# --- rejected by the schema: each enum, bound and pattern ------------------------------------

ENUM_PATHS = [path for path, node in crd_schema.walk(SPEC_SCHEMA) if "enum" in node]


@pytest.mark.parametrize("path", ENUM_PATHS, ids=".".join)
def test_schema_rejects_values_outside_each_enum(path: tuple[str, ...]) -> None:
    assert crd_schema.errors(CRD, manifest(spec=FULL_SPEC)) == []
    obj = manifest(spec=with_value(FULL_SPEC, path, "Bogus"))
    (error,) = crd_schema.errors(CRD, obj)
    assert "'Bogus' is not one of" in error


@pytest.mark.parametrize(
    "path",
    [p for p in ENUM_PATHS if p[0] in ("accelerator", "autoscaling", "imagePullPolicy")],
    ids=".".join,
)
def test_parse_spec_rejects_values_outside_each_enum(path: tuple[str, ...]) -> None:
    with pytest.raises(SpecError, match=re.escape(".".join(path)) + " must be one of"):
        parse(manifest(spec=with_value(FULL_SPEC, path, "Bogus")))


BOUNDED = [
    (path, node)
    for path, node in crd_schema.walk(SPEC_SCHEMA)
    if "minimum" in node or "maximum" in node
]
# Within every bound at once, so moving one field to its bound breaks no cross-field rule.
ROOMY_SPEC = with_value(
    with_value(
        FULL_SPEC, ("autoscaling",), {"minReplicas": 0, "maxReplicas": 1000, "engine": "keda"}
    ),
    ("accelerator",),
    {"type": "none"},
) | {"responseTimeoutSeconds": 3600}


@pytest.mark.parametrize(("path", "node"), BOUNDED, ids=[".".join(p) for p, _ in BOUNDED])
def test_each_bound_is_enforced_by_schema_and_parse_spec(
    path: tuple[str, ...], node: dict[str, Any]
) -> None:
    step = 1 if node["type"] == "integer" else node["minimum"] / 2
    for inside in (node["minimum"], node["maximum"]):
        obj = manifest(spec=with_value(ROOMY_SPEC, path, inside))
        assert crd_schema.errors(CRD, obj) == []
        assert crd_schema.cel_violations(CRD, obj) == []
        parse(obj)
    for outside in (node["minimum"] - step, node["maximum"] + step):
        obj = manifest(spec=with_value(ROOMY_SPEC, path, outside))
        assert len(crd_schema.errors(CRD, obj)) == 1
        with pytest.raises(SpecError, match=re.escape(".".join(path)) + " must be between"):
            parse(obj)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("archive", "sha256"), "3B1F" + "0" * 60),
        (("archive", "sha256"), "3b1f..."),
        (("modelName",), "-resnet"),
        (("modelName",), "res net"),
        (("archive", "uri"), "s3://"),
        (("resources", "limits", "memory"), "8 GiB"),
        (("replicas",), "2"),
        (("env",), [{"value": "no name"}]),
        (("dependencies", "indexUrl"), "pypi.example.com/simple"),
        (("dependencies", "extraIndexUrl"), "https://a.example.com https://b.example.com"),
        (("dependencies", "install"), "yes"),
    ],
)
def test_schema_rejects_malformed_values(path: tuple[str, ...], value: Any) -> None:
    assert crd_schema.errors(CRD, manifest(spec=with_value(FULL_SPEC, path, value)))


# --- CEL rules: evaluated here, enforced by the API server, mirrored by parse_spec ------------

CANARY: dict[str, Any] = {
    "archive": {"uri": "https://models.example.com/resnet-2.1.mar"},
    "trafficPercent": 10,
}
CEL_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # CRD message: (changes that break the rule, changes on its accepted side of the boundary)
    "metadata.name must be a DNS label of at most 63 characters": (
        {"metadata": {"name": "a" * 64}},
        {"metadata": {"name": "a" * 63}},
    ),
    "batching.maxBatchDelayMs must be shorter than responseTimeoutSeconds": (
        {"batching": {"maxBatchDelayMs": 60_000}, "responseTimeoutSeconds": 60},
        {"batching": {"maxBatchDelayMs": 59_999}, "responseTimeoutSeconds": 60},
    ),
    "env must not set variables the operator manages": (
        {"env": [{"name": "A", "value": "1"}, {"name": "MARSERVE_BATCH_SIZE", "value": "4"}]},
        {"env": [{"name": "MARSERVE_JOB_QUEUE_SIZE", "value": "4"}]},
    ),
    "archive.uri must start with http://, https://, s3://, gs://, az:// or pvc://": (
        {"archive": {"uri": "file:///models/resnet.mar"}},
        {"archive": {"uri": "http://models.example.com/resnet.mar"}},
    ),
    "a pvc archive.uri must be pvc://CLAIM/PATH/TO/MODEL.mar": (
        {"archive": {"uri": "pvc://models"}},
        {"archive": {"uri": "pvc://models/resnet.mar"}},
    ),
    "an s3 archive.uri must be s3://BUCKET/KEY": (
        {"archive": {"uri": "s3://bucket", "secretRef": {"name": "aws"}}},
        {"archive": {"uri": "s3://bucket/k", "secretRef": {"name": "aws"}}},
    ),
    "a gs archive.uri must be gs://BUCKET/OBJECT": (
        {"archive": {"uri": "gs://bucket"}},
        {"archive": {"uri": "gs://bucket/o"}},
    ),
    "an az archive.uri must be az://ACCOUNT/CONTAINER/BLOB": (
        {"archive": {"uri": "az://account/container"}},
        {"archive": {"uri": "az://account/container/b"}},
    ),
    "archive.identity workload reads with the service account's identity": (
        {"archive": {"uri": "s3://b/k", "identity": "workload", "secretRef": {"name": "aws"}}},
        {"archive": {"uri": "s3://b/k", "identity": "workload"}},
    ),
    "archive.identity workload applies to s3://, gs:// and Azure Blob archives": (
        {"archive": {"uri": "https://models.example.com/m.mar", "identity": "workload"}},
        {"archive": {"uri": "https://acct.blob.core.windows.net/c/m.mar", "identity": "workload"}},
    ),
    "archive.cache needs archive.sha256": (
        {"archive": {"uri": "s3://b/k", "cache": {"claimName": "models"}, "sha256": None}},
        {"archive": {"uri": "s3://b/k", "cache": {"claimName": "models"}, "sha256": "a" * 64}},
    ),
    "a pvc:// archive is mounted, not downloaded": (
        {"archive": {"uri": "pvc://models/resnet.mar", "secretRef": {"name": "aws"}}},
        {"archive": {"uri": "pvc://models/resnet.mar"}},
    ),
    "autoscaling.maxReplicas must be at least autoscaling.minReplicas": (
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 4}},
        {"autoscaling": {"minReplicas": 4, "maxReplicas": 4}},
    ),
    "autoscaling.minReplicas 0 (scale to zero) needs engine keda": (
        {"autoscaling": {"minReplicas": 0, "engine": "hpa"}},
        {"autoscaling": {"minReplicas": 0, "engine": "keda"}},
    ),
    "autoscaling.target is required for metric requestsPerSecond": (
        {"autoscaling": {"metric": "requestsPerSecond", "target": None}},
        {"autoscaling": {"metric": "requestsPerSecond", "target": 50}},
    ),
    "dependencies.secretName needs dependencies.indexUrl or dependencies.extraIndexUrl": (
        {"dependencies": {"install": True, "secretName": "index-login"}},
        {
            "dependencies": {
                "install": True,
                "secretName": "index-login",
                "extraIndexUrl": "https://pypi.example.com/simple",
            }
        },
    ),
    "accelerator.count must be at least 1 when accelerator.type is not none": (
        {"accelerator": {"type": "amd", "count": 0}},
        {"accelerator": {"type": "none", "count": 0}},
    ),
    "metadata.name must be at most 56 characters with a canary": (
        {"metadata": {"name": "a" * 57}, "canary": CANARY},
        {"metadata": {"name": "a" * 56}, "canary": CANARY},
    ),
    "canary.archive.uri must start with http://, https://, s3://, gs://, az:// or pvc://": (
        {"canary": {**CANARY, "archive": {"uri": "file:///models/resnet.mar"}}},
        {"canary": {**CANARY, "archive": {"uri": "http://models.example.com/resnet.mar"}}},
    ),
    "a gs canary.archive.uri must be gs://BUCKET/OBJECT": (
        {"canary": {**CANARY, "archive": {"uri": "gs://bucket"}}},
        {"canary": {**CANARY, "archive": {"uri": "gs://bucket/o"}}},
    ),
    "an az canary.archive.uri must be az://ACCOUNT/CONTAINER/BLOB": (
        {"canary": {**CANARY, "archive": {"uri": "az://account/container"}}},
        {"canary": {**CANARY, "archive": {"uri": "az://account/container/b"}}},
    ),
    "canary.archive.identity workload reads with the service account's identity": (
        {
            "canary": {
                **CANARY,
                "archive": {"uri": "s3://b/k", "identity": "workload", "secretRef": {"name": "a"}},
            }
        },
        {"canary": {**CANARY, "archive": {"uri": "s3://b/k", "identity": "workload"}}},
    ),
    "canary.archive.identity workload applies to s3://, gs:// and Azure Blob archives": (
        {
            "canary": {
                **CANARY,
                "archive": {"uri": "https://m.example.com/m", "identity": "workload"},
            }
        },
        {"canary": {**CANARY, "archive": {"uri": "gs://b/m.mar", "identity": "workload"}}},
    ),
    "canary.archive.cache needs canary.archive.sha256": (
        {"canary": {**CANARY, "archive": {"uri": "s3://b/k", "cache": {"claimName": "models"}}}},
        {
            "canary": {
                **CANARY,
                "archive": {
                    "uri": "s3://b/k",
                    "cache": {"claimName": "models"},
                    "sha256": "a" * 64,
                },
            }
        },
    ),
    "a pvc canary.archive.uri must be pvc://CLAIM/PATH/TO/MODEL.mar": (
        {"canary": {**CANARY, "archive": {"uri": "pvc://models"}}},
        {"canary": {**CANARY, "archive": {"uri": "pvc://models/resnet.mar"}}},
    ),
    "an s3 canary.archive.uri must be s3://BUCKET/KEY": (
        {"canary": {**CANARY, "archive": {"uri": "s3://bucket", "secretRef": {"name": "aws"}}}},
        {"canary": {**CANARY, "archive": {"uri": "s3://bucket/k", "secretRef": {"name": "aws"}}}},
    ),
    "a pvc:// canary archive is mounted, not downloaded": (
        {
            "canary": {
                **CANARY,
                "archive": {"uri": "pvc://models/resnet.mar", "secretRef": {"name": "aws"}},
            }
        },
        {"canary": {**CANARY, "archive": {"uri": "pvc://models/resnet.mar"}}},
    ),
    "pod.labels must not set the labels the operator sets": (
        {"pod": {"labels": {"team": "a", "app.kubernetes.io/instance": "other"}}},
        {"pod": {"labels": {"team": "a", "app.kubernetes.io/part-of": "search"}}},
    ),
    "pod.annotations must not set the annotations the operator sets": (
        {"pod": {"annotations": {"serving.marserve.io/spec-hash": "0"}}},
        {"pod": {"annotations": {"prometheus.io/scheme": "http"}}},
    ),
    "pod.volumes must not use a volume name the operator uses": (
        {"pod": {"volumes": [{"name": "marserve-cache", "emptyDir": {}}]}},
        {"pod": {"volumes": [{"name": "cache", "emptyDir": {}}]}},
    ),
    "pod.volumeMounts must each mount one of pod.volumes": (
        {"pod": {"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}},
        {
            "pod": {
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            }
        },
    ),
    "pod.volumeMounts must not overlap a path the operator mounts": (
        {
            "pod": {
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "volumeMounts": [{"name": "cache", "mountPath": "/mnt"}],
            }
        },
        {
            "pod": {
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "volumeMounts": [{"name": "cache", "mountPath": "/mnt/cache"}],
            }
        },
    ),
    "pod.envFrom prefixes must not start with MARSERVE_": (
        {"pod": {"envFrom": [{"secretRef": {"name": "s"}, "prefix": "MARSERVE_"}]}},
        {"pod": {"envFrom": [{"secretRef": {"name": "s"}, "prefix": "APP_MARSERVE_"}]}},
    ),
}


def case_for(message: str) -> str:
    (key,) = [key for key in CEL_CASES if message.startswith(key)]
    return key


def test_every_cel_rule_has_a_case() -> None:
    messages = [message for _, _, message in crd_schema.cel_rules(SCHEMA)]
    assert sorted(case_for(m) for m in messages) == sorted(CEL_CASES)


@pytest.mark.parametrize("key", list(CEL_CASES))
def test_cel_rule_rejects_and_parse_spec_agrees(key: str) -> None:
    broken, accepted = CEL_CASES[key]
    obj = changed(broken)
    # Only CEL guards this: the structural schema alone accepts the object.
    assert crd_schema.errors(CRD, obj) == []
    assert [case_for(m) for m in crd_schema.cel_violations(CRD, obj)] == [key]
    with pytest.raises(SpecError):
        parse(obj)

    obj = changed(accepted)
    assert crd_schema.errors(CRD, obj) == []
    assert crd_schema.cel_violations(CRD, obj) == []
    parse(obj)


def test_cel_env_rule_names_exactly_the_managed_variables() -> None:
    (rule,) = [r for _, r, m in crd_schema.cel_rules(SCHEMA) if m.startswith("env must not")]
    assert re.findall(r"'(MARSERVE_[A-Z_]+)'", rule) == list(OPERATOR_MANAGED_WORKER_ENV)


@pytest.mark.parametrize("name", ["3d-model", "Resnet", "res_net", "resnet-", "a" * 64])
def test_names_that_cannot_name_a_service_are_rejected(name: str) -> None:
    obj = changed({"metadata": {"name": name}})
    assert [case_for(m) for m in crd_schema.cel_violations(CRD, obj)] == [
        "metadata.name must be a DNS label of at most 63 characters"
    ]
    with pytest.raises(SpecError, match=r"metadata\.name"):
        parse(obj)
