"""What the marserve server, the operator and the Helm chart must agree on, written once.

A name retyped in two places breaks a cluster silently when one copy changes: the operator would
set a variable the server no longer reads, an HPA would ask for a series nobody exports. So the
ports, the `MARSERVE_*` variables, the metric names and the termination-log record live here, the
server and the operator import them, and `make chart` writes the chart's copies from them.

Standard library only: the operator imports this without torch, aiohttp or prometheus_client.
Every value is on the wire; changing one breaks running clusters and existing dashboards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

# --- Ports and paths -------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A port of the server: its number, and the container port name the Service, the probes and
    ServiceMonitors refer to instead of the number."""

    name: str
    number: int


INFERENCE_PORT: Final = Port("http", 8080)
MANAGEMENT_PORT: Final = Port("management", 8081)
METRICS_PORT: Final = Port("metrics", 8082)
# TorchServe's gRPC inference and management APIs (0 or "off" turns either off).
GRPC_INFERENCE_PORT: Final = Port("grpc", 7070)
GRPC_MANAGEMENT_PORT: Final = Port("grpc-management", 7071)
METRICS_PATH: Final = "/metrics"
# TorchServe's /ping answers Healthy only once every model is loaded: it gates traffic.
READINESS_PATH: Final = "/ping"
LIVENESS_PATH: Final = "/v2/health/live"
# Where the init container unpacks the archive and the server serves it from (the worker image's
# default model store too).
MODEL_DIR: Final = "/mnt/models"
# The folder of a model directory holding the packages of the archive's requirementsFile (or a
# link to them): a worker puts it on sys.path when it is there, whoever installed them.
MODEL_PACKAGES_DIR: Final = ".marserve-packages"

# --- Environment variables -------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerEnv:
    """The variables `marserve serve` reads: the operator sets some from the InferenceModel,
    users may set the rest through `spec.env`."""

    model_store: str = "MARSERVE_MODEL_STORE"
    models: str = "MARSERVE_MODELS"
    config_file: str = "MARSERVE_CONFIG_FILE"
    host: str = "MARSERVE_HOST"
    inference_port: str = "MARSERVE_INFERENCE_PORT"
    management_port: str = "MARSERVE_MANAGEMENT_PORT"
    metrics_port: str = "MARSERVE_METRICS_PORT"
    grpc_inference_port: str = "MARSERVE_GRPC_INFERENCE_PORT"
    grpc_management_port: str = "MARSERVE_GRPC_MANAGEMENT_PORT"
    handler: str = "MARSERVE_HANDLER"
    token_file: str = "MARSERVE_TOKEN_FILE"
    log_format: str = "MARSERVE_LOG_FORMAT"
    grace_period_seconds: str = "MARSERVE_GRACE_PERIOD_SECONDS"
    max_request_size: str = "MARSERVE_MAX_REQUEST_SIZE"
    worker_grace_seconds: str = "MARSERVE_WORKER_GRACE_SECONDS"
    worker_idle_seconds: str = "MARSERVE_WORKER_IDLE_SECONDS"
    max_response_size: str = "MARSERVE_MAX_RESPONSE_SIZE"
    batch_size: str = "MARSERVE_BATCH_SIZE"
    max_batch_delay_ms: str = "MARSERVE_MAX_BATCH_DELAY_MS"
    workers: str = "MARSERVE_WORKERS"
    response_timeout_seconds: str = "MARSERVE_RESPONSE_TIMEOUT_SECONDS"
    job_queue_size: str = "MARSERVE_JOB_QUEUE_SIZE"
    worker_memory_limit_mb: str = "MARSERVE_WORKER_MEMORY_LIMIT_MB"
    install_model_deps: str = "MARSERVE_INSTALL_MODEL_DEPS"
    model_packages_cache: str = "MARSERVE_MODEL_PACKAGES_CACHE"


@dataclass(frozen=True)
class ExtractEnv:
    """The variables `marserve extract`, the init container, reads."""

    termination_log: str = "MARSERVE_TERMINATION_LOG"
    # An HTTP Authorization header value for archive downloads, from spec.archive.secretName.
    archive_authorization: str = "MARSERVE_ARCHIVE_AUTHORIZATION"
    # `workload` when the model's archive is read with its service account's cloud identity.
    archive_identity: str = "MARSERVE_ARCHIVE_IDENTITY"


@dataclass(frozen=True)
class PackageIndexEnv:
    """The variables that point the install of a model's requirements at a package index; the
    operator sets them from spec.dependencies, the credentials from a Secret."""

    package_index_url: str = "MARSERVE_PACKAGE_INDEX_URL"
    package_extra_index_url: str = "MARSERVE_PACKAGE_EXTRA_INDEX_URL"
    package_index_username: str = "MARSERVE_PACKAGE_INDEX_USERNAME"
    package_index_password: str = "MARSERVE_PACKAGE_INDEX_PASSWORD"


@dataclass(frozen=True)
class OperatorEnv:
    """The variables the operator reads its settings from; the chart sets them."""

    worker_image: str = "MARSERVE_WORKER_IMAGE"
    watch_namespaces: str = "MARSERVE_WATCH_NAMESPACES"
    termination_grace_seconds: str = "MARSERVE_TERMINATION_GRACE_SECONDS"
    pre_stop_seconds: str = "MARSERVE_PRE_STOP_SECONDS"
    startup_budget_seconds: str = "MARSERVE_STARTUP_BUDGET_SECONDS"
    prometheus_url: str = "MARSERVE_PROMETHEUS_URL"
    model_volume_size_limit: str = "MARSERVE_MODEL_VOLUME_SIZE_LIMIT"
    intel_gpu_resource: str = "MARSERVE_INTEL_GPU_RESOURCE"
    http_add_on_interceptor: str = "MARSERVE_HTTP_ADD_ON_INTERCEPTOR"


# The value of MARSERVE_ARCHIVE_IDENTITY that asks for workload identity.
ARCHIVE_IDENTITY_WORKLOAD: Final = "workload"
# An https:// archive on a host ending so is an Azure Blob, read with Azure's credentials.
AZURE_BLOB_HOST_SUFFIX: Final = ".blob.core.windows.net"

WORKER_ENV: Final = WorkerEnv()
EXTRACT_ENV: Final = ExtractEnv()
PACKAGE_INDEX_ENV: Final = PackageIndexEnv()
OPERATOR_ENV: Final = OperatorEnv()
# The server's variables the operator sets from spec fields; the CRD refuses them in spec.env.
OPERATOR_MANAGED_WORKER_ENV: Final = (
    WORKER_ENV.models,
    WORKER_ENV.host,
    WORKER_ENV.batch_size,
    WORKER_ENV.max_batch_delay_ms,
    WORKER_ENV.workers,
    WORKER_ENV.response_timeout_seconds,
    WORKER_ENV.handler,
    WORKER_ENV.token_file,
    WORKER_ENV.grace_period_seconds,
    WORKER_ENV.grpc_inference_port,
    WORKER_ENV.grpc_management_port,
)

# --- Metrics ---------------------------------------------------------------------------------

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricLabels:
    """The label names queries group and filter by (Prometheus adds `namespace` and `pod`)."""

    model: str = "model"
    version: str = "version"
    code: str = "code"
    reason: str = "reason"


METRIC_LABELS: Final = MetricLabels()


@dataclass(frozen=True)
class MetricFamily:
    """One native metric as the server declares it, and the series names queries read."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    documentation: str

    @property
    def series(self) -> str:
        """The sample name of a counter or gauge (prometheus_client suffixes counters)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    @property
    def bucket(self) -> str:
        return self._histogram_sample("bucket")

    @property
    def sum(self) -> str:
        return self._histogram_sample("sum")

    @property
    def count(self) -> str:
        return self._histogram_sample("count")

    def _histogram_sample(self, suffix: str) -> str:
        if self.kind != "histogram":
            raise ValueError(f"{self.name} is a {self.kind}, it has no _{suffix} series")
        return f"{self.name}_{suffix}"


_MODEL = (METRIC_LABELS.model,)
_MODEL_VERSION = (METRIC_LABELS.model, METRIC_LABELS.version)

REQUEST_DURATION: Final = MetricFamily(
    "marserve_request_duration_seconds",
    "histogram",
    _MODEL_VERSION,
    "Inference request time, arrival to response.",
)
QUEUE_WAIT: Final = MetricFamily(
    "marserve_queue_wait_seconds",
    "histogram",
    _MODEL_VERSION,
    "Time a request waited in its model's queue.",
)
PREDICTION_DURATION: Final = MetricFamily(
    "marserve_prediction_seconds",
    "histogram",
    _MODEL_VERSION,
    "Service.predict time per batch (PredictionTime).",
)
HANDLER_DURATION: Final = MetricFamily(
    "marserve_handler_seconds",
    "histogram",
    _MODEL_VERSION,
    "Handler handle() time per batch (HandlerTime).",
)
BATCH_SIZE: Final = MetricFamily(
    "marserve_batch_size",
    "histogram",
    _MODEL_VERSION,
    "Requests per batch sent to a worker.",
)
REQUESTS: Final = MetricFamily(
    "marserve_requests",
    "counter",
    (*_MODEL_VERSION, METRIC_LABELS.code),
    "Inference requests by response code.",
)
INFLIGHT_REQUESTS: Final = MetricFamily(
    "marserve_inflight_requests",
    "gauge",
    _MODEL,
    "Requests queued or running, per model.",
)
QUEUE_DEPTH: Final = MetricFamily(
    "marserve_queue_depth",
    "gauge",
    _MODEL,
    "Requests waiting for a worker, per model.",
)
WORKER_RESTARTS: Final = MetricFamily(
    "marserve_worker_restarts",
    "counter",
    _MODEL,
    "Worker processes restarted after dying.",
)
WORKER_RECYCLES: Final = MetricFamily(
    "marserve_worker_recycles",
    "counter",
    (*_MODEL_VERSION, METRIC_LABELS.reason),
    "Workers replaced on purpose after a batch (memory: past the model's memory limit); "
    "not counted as restarts, which alert on crashes.",
)
MODEL_LOAD_DURATION: Final = MetricFamily(
    "marserve_model_load_seconds",
    "gauge",
    _MODEL,
    "Time the latest worker took to load its model.",
)
WORKERS: Final = MetricFamily(
    "marserve_workers",
    "gauge",
    _MODEL,
    "Worker processes with the model loaded (idle or busy), per model.",
)
WORKER_MESSAGES_REJECTED: Final = MetricFamily(
    "marserve_worker_messages_rejected",
    "counter",
    _MODEL,
    "Messages from worker processes the front end could not use (not unpickled, not a "
    "message, or for a batch it did not send) and skipped.",
)
METRIC_FAMILIES: Final = (
    REQUEST_DURATION,
    QUEUE_WAIT,
    PREDICTION_DURATION,
    HANDLER_DURATION,
    BATCH_SIZE,
    REQUESTS,
    INFLIGHT_REQUESTS,
    QUEUE_DEPTH,
    WORKER_RESTARTS,
    WORKER_RECYCLES,
    MODEL_LOAD_DURATION,
    WORKERS,
    WORKER_MESSAGES_REJECTED,
)

# --- Kubernetes ------------------------------------------------------------------------------

# The managed-by label value on everything the operator creates; the chart selects by it.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "marserve-operator"

# --- Termination log -------------------------------------------------------------------------

# Kubernetes' default terminationMessagePath: the pod status shows what the container left here.
TERMINATION_LOG_PATH: Final = "/dev/termination-log"


@dataclass(frozen=True)
class ExtractedArchive:
    """What the init container leaves in its termination log after a successful extraction;
    the operator shows the version as `status.modelVersion`. A failure leaves one plain line
    instead, which the operator shows as it is. `cache_hit` is None without a shared archive
    cache (the key is then left out, as older extractors wrote it), else whether the model was
    already there."""

    model_name: str
    model_version: str | None
    cache_hit: bool | None = None

    def to_json(self) -> str:
        record: dict[str, object] = {
            "modelName": self.model_name,
            "modelVersion": self.model_version,
        }
        if self.cache_hit is not None:
            record["cacheHit"] = self.cache_hit
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: str) -> ExtractedArchive | None:
        """The record in a termination message, or None when the message is not one."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        version = data.get("modelVersion")
        cache_hit = data.get("cacheHit")
        return cls(
            model_name=str(data.get("modelName") or ""),
            model_version=str(version) if version else None,
            cache_hit=cache_hit if isinstance(cache_hit, bool) else None,
        )
