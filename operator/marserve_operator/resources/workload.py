"""The model's Deployment: an init container unpacks the archive, then the `worker` container
serves it."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Final

from marserve.contract import (
    ARCHIVE_IDENTITY_WORKLOAD,
    EXTRACT_ENV,
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    INFERENCE_PORT,
    LIVENESS_PATH,
    MANAGEMENT_PORT,
    METRICS_PORT,
    MODEL_DIR,
    READINESS_PATH,
    WORKER_ENV,
)
from marserve_operator.resources import accelerators
from marserve_operator.resources.dependencies import (
    INSTALL_DEPS_CONTAINER,
    PACKAGES_DIR,
    package_index_env,
)
from marserve_operator.resources.metadata import (
    REVISION_LABEL,
    SPEC_HASH_ANNOTATION,
    labels,
    object_meta,
    scrape_annotations,
    selector,
)
from marserve_operator.resources.pod_customisation import customised
from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import Archive, ModelSpec

ARCHIVE_DIR: Final = "/mnt/archive"
# The shared cache claim in the init container; each archive unpacks into CACHE_DIR/<sha256>.
CACHE_DIR: Final = "/mnt/archive-cache"
# A gs:// archive's Secret is mounted here; its key.json is the service-account key.
ARCHIVE_SECRET_DIR: Final = "/var/run/secrets/marserve/archive"
GCS_KEY_FILE: Final = "key.json"
# Azure workload identity's webhook only injects its token into pods with this label.
AZURE_WORKLOAD_IDENTITY_LABEL: Final = "azure.workload.identity/use"
TOKEN_DIR: Final = "/var/run/secrets/marserve/auth"
_PROBE_PERIOD_SECONDS: Final = 10

_CONTAINER_SECURITY: Final = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY: Final = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def spec_hash(template: Mapping[str, Any]) -> str:
    """A short digest of a pod template: it changes exactly when what the pods run changes."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _volumes(model: ModelSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    empty_models: dict[str, Any] = {}
    if settings.model_volume_size_limit:
        empty_models["sizeLimit"] = settings.model_volume_size_limit
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if model.archive.cache_claim is None:
        volumes.insert(0, {"name": "models", "emptyDir": empty_models})
    if model.dependencies.install:
        volumes.append({"name": "model-packages", "emptyDir": {}})
    volumes += _archive_volumes(model)
    if model.auth is not None:
        volumes.append(
            {
                "name": "auth-token",
                "secret": {
                    "secretName": model.auth.name,
                    "items": [{"key": model.auth.key, "path": "token"}],
                    "defaultMode": 0o440,
                },
            }
        )
    return volumes


def _archive_volumes(model: ModelSpec) -> list[dict[str, Any]]:
    """The claim a pvc:// archive is read from, a gs:// archive's key Secret, the cache claim."""
    archive = model.archive
    volumes: list[dict[str, Any]] = []
    if archive.pvc_claim is not None:
        volumes.append(
            {
                "name": "archive",
                "persistentVolumeClaim": {"claimName": archive.pvc_claim, "readOnly": True},
            }
        )
    if archive.scheme == "gs" and archive.secret_name is not None:
        secret = {"secretName": archive.secret_name, "defaultMode": 0o440}
        volumes.append({"name": "archive-credentials", "secret": secret})
    if archive.cache_claim is not None:
        claim = {"claimName": archive.cache_claim}
        volumes.append({"name": "archive-cache", "persistentVolumeClaim": claim})
    return volumes


def _model_mount(model: ModelSpec, *, read_only: bool = True) -> dict[str, Any]:
    """The model directory: the pod's own copy, or the cache's. Only the dependency installer
    writes to it (the link to the model's packages, the same path in every pod)."""
    if model.archive.cache_claim is None:
        return {"name": "models", "mountPath": MODEL_DIR, "readOnly": read_only}
    return {
        "name": "archive-cache",
        "mountPath": MODEL_DIR,
        "subPath": model.archive.sha256,
        "readOnly": read_only,
    }


def archive_pod_labels(model: ModelSpec) -> dict[str, str]:
    """Labels the archive's credentials need on the pod (Azure workload identity's opt-in)."""
    archive = model.archive
    if archive.identity == ARCHIVE_IDENTITY_WORKLOAD and archive.is_azure_blob:
        return {AZURE_WORKLOAD_IDENTITY_LABEL: "true"}
    return {}


def _cpu_and_memory(model: ModelSpec) -> dict[str, dict[str, Any]]:
    """The worker container's CPU and memory without accelerators: the pod's effective request
    is the larger of init and app containers, so reusing them costs the Kubernetes scheduler
    nothing."""
    result = {
        key: {
            k: v
            for k, v in ((model.resources or {}).get(key) or {}).items()
            if k in ("cpu", "memory")
        }
        for key in ("requests", "limits")
    }
    return {key: value for key, value in result.items() if value}


def _container(
    name: str,
    *,
    model: ModelSpec,
    image: str,
    command: list[str],
    mounts: list[dict[str, Any]],
    resources: dict[str, Any],
) -> dict[str, Any]:
    """What both of the pod's containers share: the image, the lock-down and the termination
    message Kubernetes shows in the pod status (the operator reports it on the model)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": model.image_pull_policy,
        "command": command,
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(_CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": resources,
    }


def _extract_target(model: ModelSpec) -> tuple[list[str], dict[str, Any]]:
    """Where the init container unpacks to, with its flags, and the mount that holds it."""
    if model.archive.cache_claim is None:
        # --force: an init container that runs again in the same pod finds its earlier output.
        return [MODEL_DIR, "--force"], {"name": "models", "mountPath": MODEL_DIR}
    shared = [f"{CACHE_DIR}/{model.archive.sha256}", "--shared"]
    return shared, {"name": "archive-cache", "mountPath": CACHE_DIR}


def _archive_credentials(archive: Archive) -> dict[str, Any]:
    """The init container's env, envFrom and mounts that carry the archive's credentials."""
    found: dict[str, Any] = {}
    if archive.identity is not None:
        found["env"] = [{"name": EXTRACT_ENV.archive_identity, "value": archive.identity}]
    if archive.secret_name is None:
        return found
    if archive.scheme != "gs":
        found["envFrom"] = [{"secretRef": {"name": archive.secret_name}}]
        return found
    key_file = f"{ARCHIVE_SECRET_DIR}/{GCS_KEY_FILE}"
    found["env"] = [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": key_file}]
    found["volumeMounts"] = [
        {"name": "archive-credentials", "mountPath": ARCHIVE_SECRET_DIR, "readOnly": True}
    ]
    return found


def _extract_container(model: ModelSpec, image: str) -> dict[str, Any]:
    archive = model.archive
    source = archive.uri if archive.pvc_path is None else f"{ARCHIVE_DIR}/{archive.pvc_path}"
    target, target_mount = _extract_target(model)
    command = ["marserve", "extract", source, *target]
    if archive.sha256:
        command += ["--sha256", archive.sha256]
    credentials = _archive_credentials(archive)
    mounts: list[dict[str, Any]] = [
        target_mount,
        {"name": "tmp", "mountPath": "/tmp"},
        *credentials.pop("volumeMounts", []),
    ]
    if archive.pvc_claim is not None:
        mounts.append({"name": "archive", "mountPath": ARCHIVE_DIR, "readOnly": True})
    container = _container(
        "extract",
        model=model,
        image=image,
        command=command,
        mounts=mounts,
        resources=_cpu_and_memory(model),
    )
    container |= credentials
    return container


def _install_deps_container(model: ModelSpec, image: str) -> dict[str, Any]:
    """Runs after the extractor, into the same model volume, with the index from the spec."""
    dependencies = model.dependencies
    timeout = str(dependencies.timeout_seconds)
    command = ["marserve", "install-deps", MODEL_DIR, "--cache", PACKAGES_DIR, "--timeout", timeout]
    container = _container(
        INSTALL_DEPS_CONTAINER,
        model=model,
        image=image,
        command=command,
        mounts=[
            _model_mount(model, read_only=False),
            {"name": "model-packages", "mountPath": PACKAGES_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        resources=_cpu_and_memory(model),
    )
    env = package_index_env(dependencies)
    if env:
        container["env"] = env
    return container


def _worker_env(model: ModelSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": WORKER_ENV.models, "value": f"{model.model_name}={MODEL_DIR}"},
        {"name": WORKER_ENV.host, "value": "0.0.0.0"},
        {"name": WORKER_ENV.batch_size, "value": str(model.batching.max_batch_size)},
        {"name": WORKER_ENV.max_batch_delay_ms, "value": str(model.batching.max_batch_delay_ms)},
        {"name": WORKER_ENV.workers, "value": str(model.workers_per_replica)},
        {
            "name": WORKER_ENV.response_timeout_seconds,
            "value": str(model.response_timeout_seconds),
        },
        # SIGTERM drains for as long as the slowest accepted request may take.
        {"name": WORKER_ENV.grace_period_seconds, "value": str(model.response_timeout_seconds)},
        # Only the gRPC ports the spec asks for are bound.
        *(
            {"name": variable, "value": str(port.number) if port in model.grpc.ports else "off"}
            for variable, port in (
                (WORKER_ENV.grpc_inference_port, GRPC_INFERENCE_PORT),
                (WORKER_ENV.grpc_management_port, GRPC_MANAGEMENT_PORT),
            )
        ),
    ]
    if model.handler is not None:
        env.append({"name": WORKER_ENV.handler, "value": model.handler})
    if model.auth is not None:
        env.append({"name": WORKER_ENV.token_file, "value": f"{TOKEN_DIR}/token"})
    env += accelerators.device_visibility_env(model.accelerator)
    env += [dict(variable) for variable in model.env]
    return env


def _probe(path: str, *, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": INFERENCE_PORT.name},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _worker_container(model: ModelSpec, image: str, settings: OperatorSettings) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [_model_mount(model), {"name": "tmp", "mountPath": "/tmp"}]
    if model.auth is not None:
        mounts.append({"name": "auth-token", "mountPath": TOKEN_DIR, "readOnly": True})
    if model.dependencies.install:
        mounts.append({"name": "model-packages", "mountPath": PACKAGES_DIR, "readOnly": True})
    container = _container(
        "worker",
        model=model,
        image=image,
        command=["marserve", "serve"],
        mounts=mounts,
        resources=accelerators.container_resources(
            accelerator=model.accelerator, user=model.resources, settings=settings
        ),
    )
    container |= {
        "env": _worker_env(model),
        "ports": [
            {"name": port.name, "containerPort": port.number, "protocol": "TCP"}
            for port in (INFERENCE_PORT, MANAGEMENT_PORT, METRICS_PORT, *model.grpc.ports)
        ],
        # /ping is healthy only once the model is loaded, so it gates traffic and start-up both.
        "startupProbe": _probe(
            READINESS_PATH,
            period=_PROBE_PERIOD_SECONDS,
            failures=max(1, math.ceil(settings.startup_budget_seconds / _PROBE_PERIOD_SECONDS)),
            timeout=5,
        ),
        "readinessProbe": _probe(READINESS_PATH, period=5, failures=3, timeout=3),
        "livenessProbe": _probe(LIVENESS_PATH, period=10, failures=3, timeout=5),
    }
    if settings.pre_stop_seconds > 0:
        # Endpoints drop a terminating pod asynchronously; keep serving until they have.
        container["lifecycle"] = {
            "preStop": {"exec": {"command": ["sleep", str(settings.pre_stop_seconds)]}}
        }
    return container


def pod_template(model: ModelSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The model's pod template, annotated with the digest of everything else in it."""
    image = model.image or settings.worker_image
    pod: dict[str, Any] = {
        "securityContext": copy.deepcopy(_POD_SECURITY),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": (
            settings.pre_stop_seconds
            + model.response_timeout_seconds
            + settings.termination_grace_seconds
        ),
        "initContainers": [_extract_container(model, image)]
        + ([_install_deps_container(model, image)] if model.dependencies.install else []),
        "containers": [_worker_container(model, image, settings)],
        "volumes": _volumes(model, settings),
    }
    optional = {
        "serviceAccountName": model.service_account_name,
        "nodeSelector": dict(model.node_selector or {}),
        "affinity": model.affinity,
        "tolerations": accelerators.tolerations(
            accelerator=model.accelerator, user=model.tolerations, settings=settings
        ),
        "imagePullSecrets": [{"name": name} for name in model.image_pull_secrets],
    }
    pod.update({key: value for key, value in optional.items() if value})
    template = {
        "metadata": {
            "labels": labels(model) | archive_pod_labels(model),
            "annotations": scrape_annotations(),
        },
        "spec": pod,
    }
    template = customised(template, model, selector=selector(model))
    template["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(template)
    return template


def deployment(model: ModelSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The Deployment; `replicas` is left out when an autoscaler owns it, so the two never fight."""
    # A rollout must not need a spare accelerator: replace accelerated pods one at a time, and
    # surge CPU pods so serving capacity never drops.
    rolling = (
        {"maxSurge": 0, "maxUnavailable": 1}
        if model.accelerator.type != "none"
        else {"maxSurge": "25%", "maxUnavailable": 0}
    )
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": settings.startup_budget_seconds
        + 600
        + (model.dependencies.timeout_seconds if model.dependencies.install else 0),
        "template": pod_template(model, settings),
    }
    if model.autoscaling is None:
        spec = {"replicas": model.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(model, labels={**labels(model), REVISION_LABEL: model.revision}),
        "spec": spec,
    }
