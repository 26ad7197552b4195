"""The objects an InferenceModel owns, built by marserve_operator.resources.

Every built-in kind is validated against the Kubernetes 1.30 schemas in strict mode; the
assertions then check what the schemas cannot: that the pods run what the spec says.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from marserve.contract import WORKER_ENV
from marserve_operator import resources
from marserve_operator.resources import metrics_queries
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import ModelSpec
from support import crd_schema
from support.operator_fixtures import (
    DIGEST,
    FULL_SPEC,
    SETTINGS,
    kube_validate,
    minimal_spec,
    model,
)

SPEC_VARIANTS: dict[str, dict[str, Any]] = {
    "documented": {},
    "full": FULL_SPEC,
    "minimal": minimal_spec(),
    "pvc": minimal_spec("pvc://store/models/resnet.mar"),
    "s3-keda": {
        "archive": {"uri": "s3://bucket/resnet.mar", "secretRef": {"name": "aws"}},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 5, "engine": "keda", "target": 2.5},
    },
    "keda-prometheus": {
        **minimal_spec(),
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "engine": "keda", "target": 2.5},
    },
    "intel-rps": {
        **minimal_spec(),
        "accelerator": {"type": "intel-xpu", "count": 2},
        "autoscaling": {
            "maxReplicas": 3,
            "minReplicas": 2,
            "metric": "requestsPerSecond",
            "target": 40,
        },
    },
    "amd-static": {**minimal_spec(), "accelerator": {"type": "amd"}, "replicas": 3},
}


def variant(name: str) -> ModelSpec:
    spec = SPEC_VARIANTS[name]
    return model() if not spec else model(spec=spec)


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    (found,) = [c for c in pod["containers"] + pod["initContainers"] if c["name"] == name]
    return found


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(deployment, "worker")["env"]}


def volume(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    return found


# --- every object is valid Kubernetes ----------------------------------------------------------


@pytest.mark.parametrize("name", list(SPEC_VARIANTS))
@pytest.mark.parametrize("monitor", [True, False])
def test_every_built_in_object_validates_strictly(name: str, monitor: bool) -> None:
    objects = resources.desired_objects(
        variant(name), SETTINGS, service_monitor_available=monitor, http_add_on_available=True
    )
    kinds = [obj["kind"] for obj in objects]
    assert kinds[:2] == ["Deployment", "Service"]
    assert ("ServiceMonitor" in kinds) == monitor
    for obj in objects:
        assert obj["metadata"]["name"] == variant(name).name
        assert obj["metadata"]["namespace"] == "ml"
        revision = {resources.REVISION_LABEL: "stable"} if obj["kind"] == "Deployment" else {}
        assert obj["metadata"]["labels"] == resources.labels(variant(name)) | revision
        if obj["apiVersion"] == resources.HTTP_ADD_ON_API:
            assert crd_schema.published_errors(crd_schema.HTTP_SCALED_OBJECT_CRD, obj) == []
        elif obj["apiVersion"] not in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1"):
            kube_validate(obj)


def test_labels_and_selector() -> None:
    m = model()
    assert resources.labels(m) == {
        "app.kubernetes.io/name": "marserve-worker",
        "app.kubernetes.io/instance": "resnet",
        "app.kubernetes.io/managed-by": "marserve-operator",
        "serving.marserve.io/model": "resnet",
    }
    assert resources.selector(m).items() <= resources.labels(m).items()
    deployment = resources.deployment(m, SETTINGS)
    assert deployment["spec"]["selector"]["matchLabels"] == resources.selector(m)
    assert deployment["spec"]["template"]["metadata"]["labels"] == resources.labels(m)
    assert resources.service(m)["spec"]["selector"] == resources.selector(m)


# --- the init container: where the archive comes from --------------------------------------------


def test_https_archive_is_downloaded_with_its_digest_checked() -> None:
    deployment = resources.deployment(model(), SETTINGS)
    extract = container(deployment, "extract")
    assert extract["command"] == [
        "marserve", "extract", "https://models.example.com/resnet-2.0.mar", "/mnt/models",
        "--force", "--sha256", DIGEST,
    ]  # fmt: skip
    assert extract["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert extract["image"] == container(deployment, "worker")["image"]
    assert "envFrom" not in extract
    mounts = {m["mountPath"]: m for m in extract["volumeMounts"]}
    assert set(mounts) == {"/mnt/models", "/tmp"} and not mounts["/mnt/models"].get("readOnly")
    assert volume(deployment, "models") == {"name": "models", "emptyDir": {}}


def test_s3_archive_gets_credentials_from_its_secret() -> None:
    deployment = resources.deployment(variant("s3-keda"), SETTINGS)
    extract = container(deployment, "extract")
    assert extract["command"][2] == "s3://bucket/resnet.mar"
    assert "--sha256" not in extract["command"]
    assert extract["envFrom"] == [{"secretRef": {"name": "aws"}}]
    assert "envFrom" not in container(deployment, "worker")


def test_s3_archive_without_a_secret_uses_the_pods_credential_chain() -> None:
    m = model(spec={"archive": {"uri": "s3://bucket/resnet.mar"}})
    extract = container(resources.deployment(m, SETTINGS), "extract")
    assert "envFrom" not in extract and "env" not in extract


@pytest.mark.parametrize(
    ("uri", "azure"),
    [
        ("s3://bucket/resnet.mar", False),
        ("gs://bucket/resnet.mar", False),
        ("az://acct/models/resnet.mar", True),
        ("https://acct.blob.core.windows.net/models/resnet.mar", True),
    ],
)
def test_workload_identity_reaches_the_extractor_and_azure_pods_opt_in(
    uri: str, azure: bool
) -> None:
    m = model(spec={"archive": {"uri": uri, "identity": "workload"}, "serviceAccountName": "r"})
    deployment = resources.deployment(m, SETTINGS)
    kube_validate(deployment)
    extract = container(deployment, "extract")
    assert extract["env"] == [{"name": "MARSERVE_ARCHIVE_IDENTITY", "value": "workload"}]
    assert "envFrom" not in extract
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.get("azure.workload.identity/use") == ("true" if azure else None)
    assert "azure.workload.identity/use" not in deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "r"


def test_gcs_secret_is_mounted_as_the_key_file() -> None:
    m = model(spec={"archive": {"uri": "gs://bucket/r.mar", "secretRef": {"name": "gcs-key"}}})
    deployment = resources.deployment(m, SETTINGS)
    kube_validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    extract = container(deployment, "extract")
    secret_dir = "/var/run/secrets/marserve/archive"
    assert extract["env"] == [
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{secret_dir}/key.json"}
    ]
    assert "envFrom" not in extract
    assert {"name": "archive-credentials", "mountPath": secret_dir, "readOnly": True} in extract[
        "volumeMounts"
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "archive-credentials"]
    assert volume["secret"]["secretName"] == "gcs-key"
    assert not any(
        m["name"] == "archive-credentials" for m in container(deployment, "worker")["volumeMounts"]
    )


def test_shared_cache_is_filled_by_the_init_container_and_read_by_the_worker() -> None:
    digest = "c" * 64
    m = model(
        spec={
            "archive": {
                "uri": "s3://bucket/r.mar",
                "sha256": digest,
                "cache": {"claimName": "model-cache"},
            }
        }
    )
    deployment = resources.deployment(m, SETTINGS)
    kube_validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    extract, worker = container(deployment, "extract"), container(deployment, "worker")
    assert extract["command"] == [
        "marserve",
        "extract",
        "s3://bucket/r.mar",
        f"/mnt/archive-cache/{digest}",
        "--shared",
        "--sha256",
        digest,
    ]
    assert {"name": "archive-cache", "mountPath": "/mnt/archive-cache"} in extract["volumeMounts"]
    assert {
        "name": "archive-cache",
        "mountPath": "/mnt/models",
        "subPath": digest,
        "readOnly": True,
    } in worker["volumeMounts"]
    names = [v["name"] for v in pod["volumes"]]
    assert "models" not in names
    (cache,) = [v for v in pod["volumes"] if v["name"] == "archive-cache"]
    assert cache["persistentVolumeClaim"] == {"claimName": "model-cache"}


def test_dependencies_beside_the_shared_cache_link_from_the_cached_model_directory() -> None:
    """Every pod puts its packages at the same path, so the installer may write the model's link
    into the shared cache's copy; every volume the containers mount exists."""
    digest = "d" * 64
    archive = {"uri": "s3://bucket/r.mar", "sha256": digest, "cache": {"claimName": "model-cache"}}
    m = model(spec={"archive": archive, "dependencies": {"install": True}})
    deployment = resources.deployment(m, SETTINGS)
    kube_validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    installer = container(deployment, "install-deps")
    assert {
        "name": "archive-cache",
        "mountPath": "/mnt/models",
        "subPath": digest,
        "readOnly": False,
    } in installer["volumeMounts"]
    volumes = {v["name"] for v in pod["volumes"]}
    for each in [*pod["initContainers"], *pod["containers"]]:
        assert {mount["name"] for mount in each["volumeMounts"]} <= volumes, each["name"]


def test_http_archive_secret_is_passed_to_the_extractor_only() -> None:
    m = model(archive={"secretRef": {"name": "download-auth"}})
    deployment = resources.deployment(m, SETTINGS)
    assert container(deployment, "extract")["envFrom"] == [{"secretRef": {"name": "download-auth"}}]


def test_pvc_archive_is_mounted_read_only_and_extracted_from_the_mount() -> None:
    deployment = resources.deployment(variant("pvc"), SETTINGS)
    extract = container(deployment, "extract")
    assert extract["command"][2:4] == ["/mnt/archive/models/resnet.mar", "/mnt/models"]
    assert {"name": "archive", "mountPath": "/mnt/archive", "readOnly": True} in extract[
        "volumeMounts"
    ]
    assert volume(deployment, "archive")["persistentVolumeClaim"] == {
        "claimName": "store",
        "readOnly": True,
    }
    worker_mounts = [m["name"] for m in container(deployment, "worker")["volumeMounts"]]
    assert "archive" not in worker_mounts


def test_dependencies_are_installed_by_a_second_init_container_with_the_index_secret() -> None:
    deployment = resources.deployment(variant("full"), SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["extract", "install-deps"]
    install = container(deployment, "install-deps")
    assert install["command"] == [
        "marserve", "install-deps", "/mnt/models", "--cache", "/mnt/model-packages",
        "--timeout", "900",
    ]  # fmt: skip
    assert install["image"] == container(deployment, "worker")["image"]
    assert install["securityContext"] == container(deployment, "extract")["securityContext"]
    assert install["env"] == [
        {"name": "MARSERVE_PACKAGE_INDEX_URL", "value": "https://pypi.example.com/simple"},
        {
            "name": "MARSERVE_PACKAGE_EXTRA_INDEX_URL",
            "value": "https://download.pytorch.org/whl/cpu",
        },
        {
            "name": "MARSERVE_PACKAGE_INDEX_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "index-login", "key": "username"}},
        },
        {
            "name": "MARSERVE_PACKAGE_INDEX_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "index-login", "key": "password"}},
        },
    ]
    mounts = {m["mountPath"]: m for m in install["volumeMounts"]}
    assert set(mounts) == {"/mnt/models", "/mnt/model-packages", "/tmp"}
    assert not any(m.get("readOnly") for m in mounts.values())
    worker = {m["mountPath"]: m for m in container(deployment, "worker")["volumeMounts"]}
    assert worker["/mnt/model-packages"]["readOnly"] is True  # the model's link resolves here
    assert volume(deployment, "model-packages") == {"name": "model-packages", "emptyDir": {}}
    assert "MARSERVE_PACKAGE_INDEX_PASSWORD" not in env_of(deployment)  # the worker needs none
    # The install's time is added to the rollout's patience.
    plain = resources.deployment(model(), SETTINGS)
    assert (
        deployment["spec"]["progressDeadlineSeconds"]
        == plain["spec"]["progressDeadlineSeconds"] + 900
    )


def test_no_dependency_install_unless_asked() -> None:
    for spec in (model(), model(dependencies={"indexUrl": "https://pypi.example.com/simple"})):
        pod = resources.deployment(spec, SETTINGS)["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["extract"]
        assert "model-packages" not in {v["name"] for v in pod["volumes"]}
    public = resources.deployment(model(dependencies={"install": True}), SETTINGS)
    assert "env" not in container(public, "install-deps")  # pip's own defaults: PyPI


def test_model_volume_size_limit_comes_from_settings() -> None:
    settings = dataclasses.replace(SETTINGS, model_volume_size_limit="20Gi")
    deployment = resources.deployment(model(), settings)
    assert volume(deployment, "models")["emptyDir"] == {"sizeLimit": "20Gi"}


# --- the worker container ------------------------------------------------------------------------


def test_worker_env_carries_the_serving_settings() -> None:
    env = env_of(resources.deployment(model(), SETTINGS))
    assert env == {
        WORKER_ENV.models: "resnet=/mnt/models",
        WORKER_ENV.host: "0.0.0.0",
        WORKER_ENV.batch_size: "8",
        WORKER_ENV.max_batch_delay_ms: "5",
        WORKER_ENV.workers: "1",
        WORKER_ENV.response_timeout_seconds: "60",
        WORKER_ENV.grace_period_seconds: "60",
        WORKER_ENV.handler: "image_classifier",
        WORKER_ENV.token_file: "/var/run/secrets/marserve/auth/token",
        WORKER_ENV.grpc_inference_port: "off",
        WORKER_ENV.grpc_management_port: "off",
    }


def test_optional_env_only_when_set_and_user_env_last() -> None:
    deployment = resources.deployment(
        model(spec={**minimal_spec(), "modelName": "m1", "env": [{"name": "X", "value": "1"}]}),
        SETTINGS,
    )
    env = container(deployment, "worker")["env"]
    names = [e["name"] for e in env]
    assert WORKER_ENV.handler not in names and WORKER_ENV.token_file not in names
    assert env[-1] == {"name": "X", "value": "1"}
    assert env_of(deployment)[WORKER_ENV.models] == "m1=/mnt/models"
    assert env_of(deployment)["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_token_secret_is_mounted_read_only() -> None:
    deployment = resources.deployment(model(auth={"tokenSecretRef": {"key": "bearer"}}), SETTINGS)
    assert volume(deployment, "auth-token")["secret"] == {
        "secretName": "resnet-token",
        "items": [{"key": "bearer", "path": "token"}],
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in container(deployment, "worker")["volumeMounts"]}
    assert mounts["auth-token"] == {
        "name": "auth-token",
        "mountPath": "/var/run/secrets/marserve/auth",
        "readOnly": True,
    }
    assert mounts["models"]["readOnly"] is True


def test_ports_and_probes() -> None:
    worker = container(resources.deployment(model(), SETTINGS), "worker")
    assert worker["command"] == ["marserve", "serve"]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "http": 8080,
        "management": 8081,
        "metrics": 8082,
    }
    assert worker["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = worker["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert SETTINGS.startup_budget_seconds <= budget < SETTINGS.startup_budget_seconds + 10


def test_termination_lets_in_flight_requests_drain() -> None:
    settings = OperatorSettings(pre_stop_seconds=7, termination_grace_seconds=15)
    deployment = resources.deployment(model(), settings)
    pod = deployment["spec"]["template"]["spec"]
    worker = container(deployment, "worker")
    assert worker["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    # pre-stop, then the slowest accepted request (60 s), then a margin before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] == 7 + 60 + 15
    no_sleep = resources.deployment(model(), OperatorSettings(pre_stop_seconds=0))
    assert "lifecycle" not in container(no_sleep, "worker")


def test_pods_are_hardened() -> None:
    pod = resources.deployment(model(spec=FULL_SPEC), SETTINGS)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    for each in pod["containers"] + pod["initContainers"]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]
    assert volume({"spec": {"template": {"spec": pod}}}, "tmp") == {"name": "tmp", "emptyDir": {}}


def test_built_objects_share_no_mutable_state() -> None:
    first = resources.deployment(model(), SETTINGS)
    container(first, "worker")["securityContext"]["capabilities"]["drop"].append("NONE")
    first["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"] = "x"
    second = resources.deployment(model(), SETTINGS)
    assert container(second, "worker")["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert second["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }


def test_image_defaults_from_settings_and_spec_overrides_it() -> None:
    settings = OperatorSettings(worker_image="registry.local/worker:9")
    pod_default = resources.deployment(model(image=None), settings)
    assert container(pod_default, "worker")["image"] == "registry.local/worker:9"
    assert container(pod_default, "extract")["image"] == "registry.local/worker:9"
    pinned = resources.deployment(model(image="mirror/worker:1"), settings)
    assert container(pinned, "worker")["image"] == "mirror/worker:1"


def test_pod_overrides_pass_through() -> None:
    pod = resources.deployment(model(spec=FULL_SPEC), SETTINGS)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["serviceAccountName"] == "models"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert {c["imagePullPolicy"] for c in pod["containers"] + pod["initContainers"]} == {"Always"}
    minimal = resources.deployment(model(spec=minimal_spec()), SETTINGS)["spec"]["template"]
    assert not {"nodeSelector", "affinity", "tolerations", "serviceAccountName"} & set(
        minimal["spec"]
    )


# --- accelerators --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "resource"),
    [("nvidia", "nvidia.com/gpu"), ("intel-xpu", "gpu.intel.com/i915"), ("amd", "amd.com/gpu")],
)
def test_accelerator_is_requested_and_limited_with_its_toleration(kind: str, resource: str) -> None:
    m = model(spec={**FULL_SPEC, "accelerator": {"type": kind, "count": 2}})
    deployment = resources.deployment(m, SETTINGS)
    worker = container(deployment, "worker")
    assert worker["resources"]["requests"] == {"cpu": "2", "memory": "4Gi", resource: "2"}
    assert worker["resources"]["limits"] == {"memory": "8Gi", resource: "2"}
    # The init container only unpacks: it asks for no device.
    assert container(deployment, "extract")["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert tolerations == [
        {"key": resource, "operator": "Exists", "effect": "NoSchedule"},
        FULL_SPEC["tolerations"][0],
    ]
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(deployment)
    # Accelerated rollouts replace pods in place instead of needing a spare device.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_cpu_only_pods_ask_for_no_device_and_see_none() -> None:
    deployment = resources.deployment(model(spec=minimal_spec()), SETTINGS)
    worker = container(deployment, "worker")
    assert worker["resources"] == {}
    assert "tolerations" not in deployment["spec"]["template"]["spec"]
    assert env_of(deployment)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_intel_resource_name_is_configurable_and_tolerations_deduplicated() -> None:
    settings = OperatorSettings(intel_gpu_resource="gpu.intel.com/xe")
    own = {"key": "gpu.intel.com/xe", "operator": "Exists", "effect": "NoSchedule"}
    m = model(spec={**minimal_spec(), "accelerator": {"type": "intel-xpu"}, "tolerations": [own]})
    deployment = resources.deployment(m, settings)
    assert container(deployment, "worker")["resources"]["limits"] == {"gpu.intel.com/xe": "1"}
    assert deployment["spec"]["template"]["spec"]["tolerations"] == [own]


# --- spec hash -----------------------------------------------------------------------------------


def template_hash(m: ModelSpec, settings: OperatorSettings = SETTINGS) -> str:
    annotations = resources.deployment(m, settings)["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations[resources.SPEC_HASH_ANNOTATION]
    return value


ROLLING_CHANGES: list[dict[str, Any]] = [
    {"archive": {"uri": "https://models.example.com/resnet-2.1.mar"}},
    {"archive": {"sha256": "f" * 64}},
    {"batching": {"maxBatchSize": 16}},
    {"batching": {"maxBatchDelayMs": 6}},
    {"workersPerReplica": 2},
    {"responseTimeoutSeconds": 30},
    {"handler": "text_classifier"},
    {"modelName": "resnet50"},
    {"accelerator": {"count": 2}},
    {"resources": {"limits": {"memory": "16Gi"}}},
    {"image": "ghcr.io/marserve/worker:0.2.0"},
    {"env": [{"name": "LOG_LEVEL", "value": "info"}]},
    {"auth": None},
    {"grpc": {"enabled": True}},
    {"grpc": {"management": True}},
    {"pod": {"shmSize": "1Gi"}},
    {"pod": {"labels": {"team": "search"}}},
]
SCALING_CHANGES: list[dict[str, Any]] = [
    {"replicas": 5},
    {"autoscaling": {"maxReplicas": 20}},
    {"autoscaling": {"target": 4, "metric": "queueDepth"}},
    {"autoscaling": None},
]


def test_spec_hash_is_stable() -> None:
    assert template_hash(model()) == template_hash(model())
    reordered = dict(reversed(list(model().resources["requests"].items())))  # type: ignore[index]
    assert template_hash(model(resources={"requests": reordered})) == template_hash(model())


@pytest.mark.parametrize("change", ROLLING_CHANGES, ids=",".join)
def test_spec_hash_changes_when_the_pods_must_change(change: dict[str, Any]) -> None:
    assert template_hash(model(**change)) != template_hash(model())


@pytest.mark.parametrize("change", SCALING_CHANGES, ids=",".join)
def test_spec_hash_ignores_scaling(change: dict[str, Any]) -> None:
    assert template_hash(model(**change)) == template_hash(model())


def test_spec_hash_follows_operator_settings_that_reach_the_pods() -> None:
    assert template_hash(model(image=None)) != template_hash(
        model(image=None), OperatorSettings(worker_image="other:1")
    )


def test_every_rolling_change_gives_a_distinct_hash() -> None:
    hashes = [template_hash(model(**change)) for change in ROLLING_CHANGES]
    assert len(set(hashes)) == len(hashes)


# --- service, monitoring -------------------------------------------------------------------------


def test_service_exposes_http_and_metrics() -> None:
    service = resources.service(model())
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (8080, "http"),
        "metrics": (8082, "metrics"),
    }


@pytest.mark.parametrize(
    ("grpc", "pod_ports", "service_ports"),
    [
        ({"enabled": True}, {"grpc": 7070}, {"grpc": 7070}),
        ({"management": True}, {"grpc-management": 7071}, {}),
        (
            {"enabled": True, "management": True},
            {"grpc": 7070, "grpc-management": 7071},
            {"grpc": 7070},
        ),
    ],
    ids=["inference", "management", "both"],
)
def test_grpc_ports_are_served_and_inference_joins_the_service(
    grpc: dict[str, bool], pod_ports: dict[str, int], service_ports: dict[str, int]
) -> None:
    """The worker binds only the gRPC ports asked for; the inference one is on the Service with
    appProtocol grpc, management stays pod-local like HTTP management."""
    deployment = resources.deployment(model(grpc=grpc), SETTINGS)
    worker = container(deployment, "worker")
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {"http": 8080, "management": 8081, "metrics": 8082, **pod_ports}
    env = env_of(deployment)
    assert env[WORKER_ENV.grpc_inference_port] == str(pod_ports.get("grpc", "off"))
    assert env[WORKER_ENV.grpc_management_port] == str(pod_ports.get("grpc-management", "off"))
    assert worker["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    service = resources.service(model(grpc=grpc))
    grpc_on_service = {
        p["name"]: p["port"] for p in service["spec"]["ports"] if p["name"].startswith("grpc")
    }
    assert grpc_on_service == service_ports
    for port in service["spec"]["ports"]:
        assert port.get("appProtocol") == ("grpc" if port["name"] == "grpc" else None)
    kube_validate(deployment)
    kube_validate(service)


def test_pods_carry_scrape_annotations_and_the_service_does_not() -> None:
    template = resources.deployment(model(), SETTINGS)["spec"]["template"]
    assert (
        template["metadata"]["annotations"].items()
        >= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8082",
            "prometheus.io/path": "/metrics",
        }.items()
    )
    assert "annotations" not in resources.service(model())["metadata"]


def test_service_monitor_scrapes_the_metrics_port() -> None:
    monitor = resources.service_monitor(model())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"] == resources.selector(model())
    assert resources.service(model())["metadata"]["labels"].items() >= (
        monitor["spec"]["selector"]["matchLabels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]


# --- autoscaling ---------------------------------------------------------------------------------


def test_no_autoscaler_leaves_replicas_to_the_deployment() -> None:
    m = model(autoscaling=None)
    assert resources.autoscaler(m, SETTINGS) is None
    assert resources.deployment(m, SETTINGS)["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("metric", "name", "target", "quantity"),
    [
        ("inflight", "marserve_inflight_requests", 16, "16"),
        ("queueDepth", "marserve_queue_depth", 0.5, "500m"),
        ("requestsPerSecond", "marserve_requests_per_second", 40, "40"),
    ],
)
def test_hpa_scales_on_the_pods_metric(
    metric: str, name: str, target: float, quantity: str
) -> None:
    m = model(
        autoscaling={"metric": metric, "target": target, "scaleDownStabilizationSeconds": 600}
    )
    hpa = resources.autoscaler(m, SETTINGS)
    assert hpa is not None
    kube_validate(hpa)
    assert "replicas" not in resources.deployment(m, SETTINGS)["spec"]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 10)
    assert spec["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": name},
                "target": {"type": "AverageValue", "averageValue": quantity},
            },
        }
    ]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_keda_scaled_object_queries_prometheus() -> None:
    settings = OperatorSettings(prometheus_url="http://prom.monitoring:9090")
    m = variant("keda-prometheus")
    scaled = resources.autoscaler(m, settings)
    assert scaled is not None
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "resnet"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 5)
    assert spec["cooldownPeriod"] == 300
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"] == {
        "serverAddress": "http://prom.monitoring:9090",
        "query": (
            'sum(marserve_inflight_requests{namespace="ml",pod=~"resnet-[a-z0-9]+-[a-z0-9]+"})'
        ),
        "threshold": "2.5",
        "activationThreshold": "0",
    }
    # KEDA's schema types trigger metadata as a map of strings.
    assert all(isinstance(value, str) for value in trigger["metadata"].values())
    assert "replicas" not in resources.deployment(m, settings)["spec"]


@pytest.mark.parametrize("metric", ["inflight", "queueDepth", "requestsPerSecond"])
def test_keda_and_adapter_sum_the_same_expression(metric: str) -> None:
    m = model(autoscaling={"metric": metric, "engine": "keda"})
    (rule,) = [
        r
        for r in resources.adapter_metric_queries()
        if r["name"]["as"] == metrics_queries.METRIC_QUERIES[metric].name  # type: ignore[index]
    ]
    matchers = metrics_queries.pod_matchers(m)
    adapter_for_this_model = (
        rule["metricsQuery"]
        .replace("<<.LabelMatchers>>", matchers)
        .replace(" by (<<.GroupBy>>)", "")
    )
    assert resources.keda_query(m) == adapter_for_this_model


def test_adapter_rules_serve_each_hpa_metric_per_pod() -> None:
    rules = resources.adapter_metric_queries()
    assert sorted(r["name"]["as"] for r in rules) == [
        "marserve_inflight_requests",
        "marserve_queue_depth",
        "marserve_requests_per_second",
    ]
    for rule in rules:
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert (
            rule["metricsQuery"].startswith("sum(") and "by (<<.GroupBy>>)" in rule["metricsQuery"]
        )
    (rps,) = [r for r in rules if r["name"]["as"] == "marserve_requests_per_second"]
    assert rps["metricsQuery"] == (
        "sum(rate(marserve_requests_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)"
    )


def test_pod_matcher_does_not_catch_a_model_whose_name_extends_this_one() -> None:
    import re

    pattern = re.search(r'pod=~"([^"]+)"', metrics_queries.pod_matchers(model()))
    assert pattern is not None
    assert re.fullmatch(pattern.group(1), "resnet-7c9f8d6b5-x2x4k")
    assert not re.fullmatch(pattern.group(1), "resnet-v2-7c9f8d6b5-x2x4k")


def test_keda_query_needs_autoscaling() -> None:
    with pytest.raises(ValueError, match="no autoscaling"):
        resources.keda_query(model(autoscaling=None))


# --- disruption budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"autoscaling": None, "replicas": 1}, False),
        ({"autoscaling": None, "replicas": 2}, True),
        ({"autoscaling": {"minReplicas": 1}, "replicas": 5}, False),
        ({"autoscaling": {"minReplicas": 2}, "replicas": 1}, True),
    ],
)
def test_pod_disruption_budget_only_with_more_than_one_pod(
    changes: dict[str, Any], expected: bool
) -> None:
    pdb = resources.pod_disruption_budget(model(**changes))
    assert (pdb is not None) == expected
    if pdb is not None:
        kube_validate(pdb)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == resources.selector(model())


def test_desired_objects_cover_each_combination() -> None:
    for name, monitor, add_on in itertools.product(SPEC_VARIANTS, (True, False), (True, False)):
        m = variant(name)
        kinds = {
            o["kind"]
            for o in resources.desired_objects(
                m, SETTINGS, service_monitor_available=monitor, http_add_on_available=add_on
            )
        }
        expected = {"Deployment", "Service"}
        if resources.scales_from_zero(m):
            if add_on:
                expected.add("HTTPScaledObject")
        elif m.autoscaling is not None:
            expected.add(
                "ScaledObject" if m.autoscaling.engine == "keda" else "HorizontalPodAutoscaler"
            )
        if resources.pod_disruption_budget(m) is not None:
            expected.add("PodDisruptionBudget")
        if monitor:
            expected.add("ServiceMonitor")
        assert kinds == expected, name
