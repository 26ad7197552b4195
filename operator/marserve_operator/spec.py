"""The InferenceModel spec as typed, validated data.

`parse_spec` applies the same defaults as the CRD and re-checks its bounds, enums and CEL rules:
the API server enforces CEL, but clusters without CEL validation skip it and the operator must
report a bad spec either way, so this is the one place those rules live in Python. Errors are
`SpecError`s whose message names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from marserve.contract import (
    AZURE_BLOB_HOST_SUFFIX,
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    OPERATOR_MANAGED_WORKER_ENV,
    Port,
)
from marserve_operator.spec_fields import SpecError, SpecFields
from marserve_operator.spec_pod import PodCustomisation, parse_pod

__all__ = [
    "ACCELERATORS",
    "ENGINES",
    "IDENTITIES",
    "METRICS",
    "PULL_POLICIES",
    "SCHEMES",
    "Accelerator",
    "AcceleratorType",
    "Archive",
    "Autoscaling",
    "Batching",
    "Canary",
    "Dependencies",
    "Engine",
    "GatewayRef",
    "Grpc",
    "Metric",
    "ModelSpec",
    "PodCustomisation",
    "Revision",
    "SpecError",
    "TokenSecretRef",
    "parse_spec",
]

SCHEMES: Final = ("http", "https", "s3", "gs", "az", "pvc")
IDENTITIES: Final = ("workload",)
METRICS: Final = ("inflight", "queueDepth", "requestsPerSecond")
ENGINES: Final = ("hpa", "keda")
ACCELERATORS: Final = ("none", "nvidia", "intel-xpu", "amd")
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")

Metric = Literal["inflight", "queueDepth", "requestsPerSecond"]
Revision = Literal["stable", "canary"]
Engine = Literal["hpa", "keda"]
AcceleratorType = Literal["none", "nvidia", "intel-xpu", "amd"]

# The InferenceModel's name becomes a Service name (a DNS-1035 label) and a label value.
_OBJECT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# A canary's objects are named NAME-canary, which must stay a 63-character DNS label.
_CANARY_NAME_LENGTH: Final = 63 - len("-canary")
_SHA256 = re.compile(r"[a-f0-9]{64}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Kubernetes' quantity grammar, as the CRD's pattern for resources states it.
_QUANTITY = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?"
)
_PVC_URI = re.compile(r"pvc://([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)/([^/].*)")
_INDEX_URL = re.compile(r"https?://\S+")
# The object stores' URI shapes, and the message naming the expected one.
_STORE_URIS: Final = {
    "s3": (re.compile(r"s3://[^/]+/.+"), "s3://BUCKET/KEY"),
    "gs": (re.compile(r"gs://[^/]+/.+"), "gs://BUCKET/OBJECT"),
    "az": (re.compile(r"az://[^/]+/[^/]+/.+"), "az://ACCOUNT/CONTAINER/BLOB"),
}
_AZURE_BLOB_URL = re.compile(rf"https://[^/]+{re.escape(AZURE_BLOB_HOST_SUFFIX)}/.*")
_CLAIM_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class Archive:
    uri: str
    sha256: str | None = None
    secret_name: str | None = None
    # "workload": read with the cloud identity of the pod's service account.
    identity: str | None = None
    # A ReadWriteMany claim the archive is unpacked into once, for all replicas.
    cache_claim: str | None = None

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def is_azure_blob(self) -> bool:
        return self.scheme == "az" or bool(_AZURE_BLOB_URL.fullmatch(self.uri))

    @property
    def pvc_claim(self) -> str | None:
        """The claim of a pvc:// URI, None for downloaded archives."""
        match = _PVC_URI.fullmatch(self.uri)
        return match.group(1) if match else None

    @property
    def pvc_path(self) -> str | None:
        """The archive's path inside the claim of a pvc:// URI."""
        match = _PVC_URI.fullmatch(self.uri)
        return match.group(2) if match else None


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 1
    max_batch_delay_ms: int = 100


@dataclass(frozen=True)
class Dependencies:
    """The install of the archive's requirementsFile; `secret_name` names a basic-auth Secret
    whose credentials go only to the indexes named here."""

    install: bool = False
    index_url: str | None = None
    extra_index_url: str | None = None
    secret_name: str | None = None
    timeout_seconds: int = 600


@dataclass(frozen=True)
class Autoscaling:
    max_replicas: int
    target: float
    min_replicas: int = 1
    metric: Metric = "inflight"
    engine: Engine = "hpa"
    scale_down_stabilization_seconds: int = 300


@dataclass(frozen=True)
class Accelerator:
    type: AcceleratorType = "none"
    count: int = 1


@dataclass(frozen=True)
class Grpc:
    """Which of TorchServe's gRPC APIs the pods serve: inference (on the Service too) and the
    read-only management API (pod-local, as the HTTP management API is)."""

    enabled: bool = False
    management: bool = False

    @property
    def ports(self) -> tuple[Port, ...]:
        """The gRPC ports the pods listen on."""
        wanted = ((GRPC_INFERENCE_PORT, self.enabled), (GRPC_MANAGEMENT_PORT, self.management))
        return tuple(port for port, on in wanted if on)


@dataclass(frozen=True)
class TokenSecretRef:
    name: str
    key: str = "token"


@dataclass(frozen=True)
class Canary:
    """A second archive served beside the stable one, taking `traffic_percent` of requests."""

    archive: Archive
    traffic_percent: int


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway API Gateway (listener) a model's HTTPRoute attaches to."""

    name: str
    namespace: str | None = None
    section_name: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One InferenceModel, defaults applied. Kubernetes pass-through fields stay plain data."""

    name: str
    namespace: str
    archive: Archive
    model_name: str
    generation: int | None = None
    handler: str | None = None
    batching: Batching = Batching()
    workers_per_replica: int = 1
    response_timeout_seconds: int = 120
    replicas: int = 1
    autoscaling: Autoscaling | None = None
    accelerator: Accelerator = Accelerator()
    resources: Mapping[str, Mapping[str, Any]] | None = None
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    auth: TokenSecretRef | None = None
    dependencies: Dependencies = Dependencies()
    grpc: Grpc = Grpc()
    pod: PodCustomisation = field(default_factory=PodCustomisation)
    canary: Canary | None = None
    gateway: GatewayRef | None = None
    # Which of the model's Deployments this spec renders: the canary's is derived from the
    # stable one by `canary_revision`.
    revision: Revision = "stable"


def _archive(fields: SpecFields) -> Archive:
    uri = cast(str, fields.text("uri", required=True))
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    where = fields.where("uri")
    if scheme not in SCHEMES:
        raise SpecError(
            f"{where} must start with http://, https://, s3://, gs://, az:// or pvc://, not {uri!r}"
        )
    if scheme == "pvc" and not _PVC_URI.fullmatch(uri):
        raise SpecError(f"{where} must be pvc://CLAIM/PATH/TO/MODEL.mar, not {uri!r}")
    if scheme in _STORE_URIS and not _STORE_URIS[scheme][0].fullmatch(uri):
        raise SpecError(f"{where} must be {_STORE_URIS[scheme][1]}, not {uri!r}")
    secret_ref = fields.obj("secretRef")
    secret = secret_ref.text("name", required=True) if fields.has("secretRef") else None
    if scheme == "pvc" and secret is not None:
        raise SpecError(f"a pvc:// archive is mounted, not downloaded: drop {secret_ref.path}")
    identity = fields.choice("identity", IDENTITIES, "workload") if fields.has("identity") else None
    archive = Archive(
        uri=uri,
        sha256=fields.text("sha256", pattern=_SHA256),
        secret_name=secret,
        identity=identity,
        cache_claim=(
            fields.obj("cache").text("claimName", required=True, pattern=_CLAIM_NAME)
            if fields.has("cache")
            else None
        ),
    )
    if identity is not None and secret is not None:
        raise SpecError(
            f"{fields.where('identity')} workload reads with the service account's identity; "
            f"drop {secret_ref.path}"
        )
    if identity is not None and scheme not in _STORE_URIS and not archive.is_azure_blob:
        raise SpecError(
            f"{fields.where('identity')} workload applies to s3://, gs:// and Azure Blob archives"
        )
    if archive.cache_claim is not None and archive.sha256 is None:
        raise SpecError(
            f"{fields.where('cache')} needs {fields.where('sha256')}, which names the cached model"
        )
    return archive


def _autoscaling(fields: SpecFields, batching: Batching, workers: int) -> Autoscaling:
    min_replicas = fields.integer("minReplicas", 1, low=0, high=1000)
    max_replicas = fields.integer("maxReplicas", None, low=1, high=1000)
    metric = cast(Metric, fields.choice("metric", METRICS, "inflight"))
    engine = cast(Engine, fields.choice("engine", ENGINES, "hpa"))
    if max_replicas < min_replicas:
        raise SpecError(
            f"{fields.where('maxReplicas')} ({max_replicas}) must be at least "
            f"{fields.where('minReplicas')} ({min_replicas})"
        )
    if min_replicas == 0 and engine != "keda":
        raise SpecError(f"{fields.where('minReplicas')} 0 (scale to zero) needs engine keda")
    target = fields.number("target", low=0.001, high=1_000_000)
    if target is None:
        if metric == "requestsPerSecond":
            raise SpecError(f"{fields.where('target')} is required for metric requestsPerSecond")
        per_worker = batching.max_batch_size
        target = float(per_worker * workers if metric == "inflight" else per_worker)
    return Autoscaling(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metric=metric,
        target=target,
        engine=engine,
        scale_down_stabilization_seconds=fields.integer(
            "scaleDownStabilizationSeconds", 300, low=0, high=3600
        ),
    )


def _dependencies(fields: SpecFields) -> Dependencies:
    dependencies = Dependencies(
        install=fields.boolean("install", False),
        index_url=fields.text("indexUrl", pattern=_INDEX_URL),
        extra_index_url=fields.text("extraIndexUrl", pattern=_INDEX_URL),
        secret_name=fields.text("secretName"),
        timeout_seconds=fields.integer("timeoutSeconds", 600, low=10, high=3600),
    )
    if dependencies.secret_name and not (dependencies.index_url or dependencies.extra_index_url):
        raise SpecError(
            f"{fields.where('secretName')} needs {fields.where('indexUrl')} or "
            f"{fields.where('extraIndexUrl')}, the only indexes its credentials are sent to"
        )
    return dependencies


def _accelerator(fields: SpecFields) -> Accelerator:
    kind = cast(AcceleratorType, fields.choice("type", ACCELERATORS, "none"))
    count = fields.integer("count", 1, low=0, high=16)
    if kind != "none" and count < 1:
        raise SpecError(f"{fields.where('count')} must be at least 1 when type is {kind}")
    return Accelerator(type=kind, count=count)


def _env(fields: SpecFields) -> tuple[Mapping[str, Any], ...]:
    env = fields.items("env")
    for index, variable in enumerate(env):
        name = SpecFields(variable, f"env[{index}]").text("name", required=True)
        if name in OPERATOR_MANAGED_WORKER_ENV:
            raise SpecError(
                f"env[{index}] sets {name}, which the operator manages; use the matching spec field"
            )
    return env


def quantity(value: float) -> str:
    """A number as the API server writes it back as a quantity (whole numbers as they are,
    fractions in milli-units), so a reconcile sees no false drift."""
    return str(int(value)) if value == int(value) else f"{round(value * 1000)}m"


def _quantity(value: Any, where: str) -> str:
    """Text must be a Kubernetes quantity, or the Deployment would be refused where no status
    can tell why; numbers are written as the API server would."""
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return value
    if isinstance(value, str | bool) or not isinstance(value, int | float):
        raise SpecError(f"{where} must be a quantity such as 2, 500m or 4Gi, not {value!r}")
    return quantity(value)


def _resources(fields: SpecFields) -> Mapping[str, Mapping[str, Any]] | None:
    if not fields.data:
        return None
    return {
        key: {
            name: _quantity(value, f"{fields.where(key)}.{name}")
            for name, value in fields.obj(key).data.items()
        }
        for key in ("requests", "limits")
        if fields.has(key)
    }


def _auth(fields: SpecFields) -> TokenSecretRef | None:
    if not fields.has("auth"):
        return None
    ref = fields.obj("auth").obj("tokenSecretRef")
    return TokenSecretRef(
        name=cast(str, ref.text("name", required=True)), key=ref.text("key") or "token"
    )


def _canary(fields: SpecFields) -> Canary | None:
    if not fields.data:
        return None
    return Canary(
        archive=_archive(fields.obj("archive")),
        traffic_percent=fields.integer("trafficPercent", 0, low=0, high=100),
    )


def _gateway(fields: SpecFields) -> GatewayRef | None:
    if not fields.data:
        return None
    return GatewayRef(
        name=cast(str, fields.text("name", required=True)),
        namespace=fields.text("namespace"),
        section_name=fields.text("sectionName"),
    )


def parse_spec(
    *, name: str, namespace: str, spec: Mapping[str, Any], generation: int | None = None
) -> ModelSpec:
    """Turns an InferenceModel's spec into a ModelSpec, or raises SpecError saying what to fix."""
    if not _OBJECT_NAME.fullmatch(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS label of at most 63 characters starting "
            "with a letter: it names the model's Service and labels its pods"
        )
    fields = SpecFields(spec, "")
    if fields.has("canary") and len(name) > _CANARY_NAME_LENGTH:
        raise SpecError(
            f"metadata.name {name!r} must be at most {_CANARY_NAME_LENGTH} characters with a "
            "canary: the canary's Service and labels are NAME-canary"
        )
    batching_fields = fields.obj("batching")
    batching = Batching(
        max_batch_size=batching_fields.integer("maxBatchSize", 1, low=1, high=1024),
        max_batch_delay_ms=batching_fields.integer("maxBatchDelayMs", 100, low=0, high=60_000),
    )
    workers = fields.integer("workersPerReplica", 1, low=1, high=64)
    timeout = fields.integer("responseTimeoutSeconds", 120, low=1, high=3600)
    if batching.max_batch_delay_ms >= timeout * 1000:
        raise SpecError("batching.maxBatchDelayMs must be shorter than responseTimeoutSeconds")
    pull_secrets = fields.items("imagePullSecrets")
    return ModelSpec(
        name=name,
        namespace=namespace,
        generation=generation,
        archive=_archive(fields.obj("archive")),
        model_name=fields.text("modelName", pattern=_MODEL_NAME) or name,
        handler=fields.text("handler"),
        batching=batching,
        workers_per_replica=workers,
        response_timeout_seconds=timeout,
        replicas=fields.integer("replicas", 1, low=0, high=1000),
        autoscaling=(
            _autoscaling(fields.obj("autoscaling"), batching, workers)
            if fields.has("autoscaling")
            else None
        ),
        accelerator=_accelerator(fields.obj("accelerator")),
        resources=_resources(fields.obj("resources")),
        image=fields.text("image"),
        image_pull_policy=fields.choice("imagePullPolicy", PULL_POLICIES, "IfNotPresent"),
        node_selector=fields.mapping("nodeSelector"),
        tolerations=fields.items("tolerations"),
        affinity=fields.mapping("affinity"),
        env=_env(fields),
        service_account_name=fields.text("serviceAccountName"),
        image_pull_secrets=tuple(
            cast(str, SpecFields(s, f"imagePullSecrets[{i}]").text("name", required=True))
            for i, s in enumerate(pull_secrets)
        ),
        auth=_auth(fields),
        dependencies=_dependencies(fields.obj("dependencies")),
        grpc=Grpc(
            enabled=fields.obj("grpc").boolean("enabled", False),
            management=fields.obj("grpc").boolean("management", False),
        ),
        pod=parse_pod(fields.obj("pod")),
        canary=_canary(fields.obj("canary")),
        gateway=_gateway(fields.obj("gatewayRef")),
    )
