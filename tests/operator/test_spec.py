"""parse_spec: the typed InferenceModel spec, its defaults and its user-facing errors."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from marserve_operator.spec import (
    Accelerator,
    Archive,
    Autoscaling,
    Batching,
    Dependencies,
    ModelSpec,
    SpecError,
    TokenSecretRef,
    parse_spec,
)
from support.operator_fixtures import DIGEST, EXAMPLE_MANIFEST, FULL_SPEC, minimal_spec


def parse(spec: Any, name: str = "resnet") -> ModelSpec:
    return parse_spec(name=name, namespace="ml", spec=spec, generation=7)


def test_documented_manifest_parses_to_its_values() -> None:
    model = parse(EXAMPLE_MANIFEST["spec"])
    assert model == ModelSpec(
        name="resnet",
        namespace="ml",
        generation=7,
        archive=Archive(uri="https://models.example.com/resnet-2.0.mar", sha256=DIGEST),
        model_name="resnet",
        handler="image_classifier",
        batching=Batching(max_batch_size=8, max_batch_delay_ms=5),
        workers_per_replica=1,
        response_timeout_seconds=60,
        replicas=2,
        autoscaling=Autoscaling(
            min_replicas=1, max_replicas=10, metric="inflight", target=16.0, engine="hpa"
        ),
        accelerator=Accelerator(type="nvidia", count=1),
        resources={"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        image="ghcr.io/marserve/worker:0.1.0",
        node_selector={},
        auth=TokenSecretRef(name="resnet-token", key="token"),
    )


def test_minimal_spec_gets_defaults() -> None:
    model = parse(minimal_spec(), name="tiny")
    assert model.model_name == "tiny"
    assert model.batching == Batching(max_batch_size=1, max_batch_delay_ms=100)
    assert (model.workers_per_replica, model.response_timeout_seconds, model.replicas) == (
        1,
        120,
        1,
    )
    assert model.autoscaling is None
    assert model.accelerator == Accelerator(type="none", count=1)
    assert model.image is None and model.image_pull_policy == "IfNotPresent"
    assert model.auth is None and model.handler is None and model.archive.sha256 is None
    assert (model.tolerations, model.env, model.image_pull_secrets) == ((), (), ())
    assert model.dependencies == Dependencies(install=False, timeout_seconds=600)


def test_full_spec_keeps_pass_through_fields() -> None:
    model = parse(FULL_SPEC)
    assert model.node_selector == {"pool": "gpu"}
    assert model.tolerations == tuple(FULL_SPEC["tolerations"])
    assert model.affinity == {"nodeAffinity": {}}
    assert model.env == ({"name": "LOG_LEVEL", "value": "debug"},)
    assert model.service_account_name == "models"
    assert model.image_pull_secrets == ("registry",)
    assert model.image_pull_policy == "Always"
    assert model.dependencies == Dependencies(
        install=True,
        index_url="https://pypi.example.com/simple",
        extra_index_url="https://download.pytorch.org/whl/cpu",
        secret_name="index-login",
        timeout_seconds=900,
    )


@pytest.mark.parametrize(
    ("dependencies", "needle"),
    [
        ({"install": "yes"}, "dependencies.install must be true or false"),
        ({"indexUrl": "pypi.example.com"}, "dependencies.indexUrl 'pypi.example.com' must match"),
        ({"timeoutSeconds": 5}, "dependencies.timeoutSeconds must be between 10 and 3600"),
        ({"secretName": "login"}, "dependencies.secretName needs dependencies.indexUrl"),
    ],
)
def test_bad_dependencies_name_the_field(dependencies: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=re.escape(needle)):
        parse({**minimal_spec(), "dependencies": dependencies})


def test_model_spec_is_frozen_and_detached_from_its_input() -> None:
    spec = {**minimal_spec(), "env": [{"name": "A", "value": "1"}], "nodeSelector": {"a": "b"}}
    model = parse(spec)
    spec["env"][0]["value"] = "changed"
    spec["nodeSelector"]["a"] = "changed"
    assert model.env[0]["value"] == "1"
    assert model.node_selector == {"a": "b"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("uri", "scheme", "claim", "path"),
    [
        ("https://h/m.mar", "https", None, None),
        ("http://h:8000/a/m.mar", "http", None, None),
        ("pvc://model-store/team/resnet.mar", "pvc", "model-store", "team/resnet.mar"),
    ],
)
def test_archive_locations(uri: str, scheme: str, claim: str | None, path: str | None) -> None:
    archive = parse(minimal_spec(uri)).archive
    assert (archive.scheme, archive.pvc_claim, archive.pvc_path) == (scheme, claim, path)


def test_archive_identity_and_cache_are_kept() -> None:
    spec = {
        "archive": {
            "uri": "az://acct/models/r.mar",
            "identity": "workload",
            "sha256": "a" * 64,
            "cache": {"claimName": "model-cache"},
        }
    }
    archive = parse(spec).archive
    assert (archive.identity, archive.cache_claim, archive.is_azure_blob) == (
        "workload",
        "model-cache",
        True,
    )
    assert parse(minimal_spec("gs://bucket/r.mar")).archive.identity is None


def test_s3_archive_keeps_its_secret() -> None:
    spec = {"archive": {"uri": "s3://bucket/models/r.mar", "secretRef": {"name": "aws"}}}
    archive = parse(spec).archive
    assert (archive.scheme, archive.secret_name, archive.pvc_claim) == ("s3", "aws", None)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("inflight", 8 * 3), ("queueDepth", 8)],
)
def test_target_defaults_to_what_one_replica_absorbs(metric: str, expected: float) -> None:
    spec = {
        **minimal_spec(),
        "batching": {"maxBatchSize": 8},
        "workersPerReplica": 3,
        "autoscaling": {"maxReplicas": 4, "metric": metric},
    }
    scaling = parse(spec).autoscaling
    assert scaling is not None and scaling.target == expected


def test_fractional_target_is_kept() -> None:
    spec = {**minimal_spec(), "autoscaling": {"maxReplicas": 4, "target": 0.5}}
    scaling = parse(spec).autoscaling
    assert scaling is not None and scaling.target == 0.5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "archive.uri is required"),
        ({"archive": "https://h/m.mar"}, "archive must be an object"),
        ({"archive": {"uri": ""}}, "archive.uri must be a non-empty string"),
        ({"archive": {"uri": "h/m.mar"}}, "archive.uri must start with http://"),
        ({**minimal_spec(), "replicas": "2"}, "replicas must be an integer, not '2'"),
        ({**minimal_spec(), "replicas": True}, "replicas must be an integer"),
        ({**minimal_spec(), "batching": []}, "batching must be an object"),
        ({**minimal_spec(), "autoscaling": {}}, "autoscaling.maxReplicas is required"),
        ({**minimal_spec(), "autoscaling": {"maxReplicas": 2, "target": "4"}}, "target must be"),
        ({**minimal_spec(), "tolerations": {"key": "a"}}, "tolerations must be a list of objects"),
        ({**minimal_spec(), "env": [{"value": "x"}]}, r"env\[0\].name is required"),
        ({**minimal_spec(), "imagePullSecrets": [{}]}, r"imagePullSecrets\[0\].name is required"),
        (
            {**minimal_spec(), "auth": {"tokenSecretRef": {}}},
            "auth.tokenSecretRef.name is required",
        ),
        ({**minimal_spec(), "modelName": "a/b"}, "modelName 'a/b' must match"),
        ({"archive": {"uri": "https://h/m", "sha256": "abc"}}, "archive.sha256 'abc' must match"),
        ({**minimal_spec(), "env": [{"name": "MARSERVE_TOKEN_FILE"}]}, "operator manages"),
        ({**minimal_spec(), "grpc": {"enabled": "yes"}}, "grpc.enabled must be true or false"),
        (
            {**minimal_spec(), "env": [{"name": "MARSERVE_GRPC_INFERENCE_PORT"}]},
            "use the matching spec field",
        ),
    ],
)
def test_errors_name_the_field_to_fix(spec: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(spec)


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="spec"):
        parse_spec(name="m", namespace="ns", spec=["not", "a", "mapping"])  # type: ignore[arg-type]


def test_explicit_nulls_take_the_defaults() -> None:
    spec = {**minimal_spec(), "replicas": None, "imagePullPolicy": None, "batching": None}
    model = parse(spec)
    assert (model.replicas, model.image_pull_policy, model.batching) == (
        1,
        "IfNotPresent",
        Batching(),
    )


def test_numeric_quantities_are_written_as_the_api_server_returns_them() -> None:
    spec = {
        **minimal_spec(),
        "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"cpu": 0.5}},
    }
    assert parse(spec).resources == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "500m"},
    }
    with pytest.raises(SpecError, match=r"resources\.limits\.cpu must be a quantity"):
        parse({**minimal_spec(), "resources": {"limits": {"cpu": [1]}}})
