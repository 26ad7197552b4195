"""marserve.contract: dependency-free, every value pinned, and both sides really use it.

The pinned values are on the wire: running clusters, existing dashboards and TorchServe clients
depend on them, so a change here must be a decision, never an accident of a rename.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from marserve import contract
from marserve.server import options
from marserve.server.metrics import ServerMetrics
from marserve_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_contract_pulls_in_no_third_party_package() -> None:
    heavy = ("torch", "aiohttp", "prometheus_client", "kopf", "yaml", "kubernetes", "numpy")
    code = (
        "import sys, marserve.contract\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_ports_and_paths_are_torchserves() -> None:
    ports = (
        contract.INFERENCE_PORT,
        contract.MANAGEMENT_PORT,
        contract.METRICS_PORT,
        contract.GRPC_INFERENCE_PORT,
        contract.GRPC_MANAGEMENT_PORT,
    )
    assert [(port.name, port.number) for port in ports] == [
        ("http", 8080),
        ("management", 8081),
        ("metrics", 8082),
        ("grpc", 7070),
        ("grpc-management", 7071),
    ]
    # Kubernetes port names are IANA service names: at most 15 characters.
    assert all(len(port.name) <= 15 for port in ports)
    assert (contract.METRICS_PATH, contract.READINESS_PATH, contract.LIVENESS_PATH) == (
        "/metrics",
        "/ping",
        "/v2/health/live",
    )
    assert contract.MODEL_DIR == "/mnt/models"


def test_metric_series_names_are_pinned() -> None:
    assert [(family.name, family.kind, family.labels) for family in contract.METRIC_FAMILIES] == [
        ("marserve_request_duration_seconds", "histogram", ("model", "version")),
        ("marserve_queue_wait_seconds", "histogram", ("model", "version")),
        ("marserve_prediction_seconds", "histogram", ("model", "version")),
        ("marserve_handler_seconds", "histogram", ("model", "version")),
        ("marserve_batch_size", "histogram", ("model", "version")),
        ("marserve_requests", "counter", ("model", "version", "code")),
        ("marserve_inflight_requests", "gauge", ("model",)),
        ("marserve_queue_depth", "gauge", ("model",)),
        ("marserve_worker_restarts", "counter", ("model",)),
        ("marserve_worker_recycles", "counter", ("model", "version", "reason")),
        ("marserve_model_load_seconds", "gauge", ("model",)),
        ("marserve_workers", "gauge", ("model",)),
        ("marserve_worker_messages_rejected", "counter", ("model",)),
    ]
    assert contract.REQUESTS.series == "marserve_requests_total"
    assert contract.QUEUE_DEPTH.series == "marserve_queue_depth"
    assert contract.BATCH_SIZE.bucket == "marserve_batch_size_bucket"
    with pytest.raises(ValueError, match="gauge"):
        _ = contract.QUEUE_DEPTH.bucket


def test_environment_names_are_pinned() -> None:
    for env in (
        contract.WORKER_ENV,
        contract.EXTRACT_ENV,
        contract.PACKAGE_INDEX_ENV,
        contract.OPERATOR_ENV,
    ):
        for field in dataclasses.fields(env):
            assert getattr(env, field.name) == f"MARSERVE_{field.name.upper()}"
    assert contract.OPERATOR_MANAGED_WORKER_ENV == (
        "MARSERVE_MODELS",
        "MARSERVE_HOST",
        "MARSERVE_BATCH_SIZE",
        "MARSERVE_MAX_BATCH_DELAY_MS",
        "MARSERVE_WORKERS",
        "MARSERVE_RESPONSE_TIMEOUT_SECONDS",
        "MARSERVE_HANDLER",
        "MARSERVE_TOKEN_FILE",
        "MARSERVE_GRACE_PERIOD_SECONDS",
        "MARSERVE_GRPC_INFERENCE_PORT",
        "MARSERVE_GRPC_MANAGEMENT_PORT",
    )


def test_the_worker_reads_every_worker_variable() -> None:
    read = {option.env for option in options.OPTIONS + options.MODEL_OPTIONS}
    read |= {contract.WORKER_ENV.models, contract.WORKER_ENV.config_file}
    assert read == set(dataclasses.astuple(contract.WORKER_ENV))


def test_the_operator_reads_every_operator_variable() -> None:
    values = {
        "worker_image": "registry.local/worker:2",
        "watch_namespaces": "ml",
        "termination_grace_seconds": "7",
        "pre_stop_seconds": "7",
        "startup_budget_seconds": "7",
        "prometheus_url": "http://prometheus:9090",
        "model_volume_size_limit": "1Gi",
        "intel_gpu_resource": "gpu.intel.com/xe",
        "http_add_on_interceptor": "interceptor.keda-http.svc:8080",
    }
    assert set(values) == {field.name for field in dataclasses.fields(contract.OPERATOR_ENV)}
    for field, value in values.items():
        name = getattr(contract.OPERATOR_ENV, field)
        assert OperatorSettings.from_env({name: value}) != OperatorSettings(), name


def test_the_worker_exports_every_metric_family_as_declared() -> None:
    metrics = ServerMetrics(hostname="pod-1")
    model = metrics.for_model(model="m", version="1")
    model.request_done(code=200, total_s=0.1, queue_s=0.01)
    families = {family.name: family for family in metrics.registry.collect()}
    for declared in contract.METRIC_FAMILIES:
        exported = families[declared.name]
        assert exported.type == declared.kind
        sample_names = {sample.name for sample in exported.samples}
        sample_labels = {
            name for sample in exported.samples for name in sample.labels if name != "le"
        }
        assert sample_labels == set(declared.labels), declared.name
        wanted = declared.bucket if declared.kind == "histogram" else declared.series
        assert wanted in sample_names


def test_the_extracted_archive_record_round_trips_byte_for_byte() -> None:
    record = contract.ExtractedArchive(model_name="mlp", model_version="1.0")
    assert record.to_json() == '{"modelName": "mlp", "modelVersion": "1.0"}'
    assert contract.ExtractedArchive.from_json(record.to_json()) == record
    unversioned = contract.ExtractedArchive(model_name="mlp", model_version=None)
    assert contract.ExtractedArchive.from_json(unversioned.to_json()) == unversioned


@pytest.mark.parametrize("hit", [True, False])
def test_the_record_carries_the_shared_cache_outcome(hit: bool) -> None:
    record = contract.ExtractedArchive(model_name="mlp", model_version="1.0", cache_hit=hit)
    assert json.loads(record.to_json())["cacheHit"] is hit
    assert contract.ExtractedArchive.from_json(record.to_json()) == record
    older = contract.ExtractedArchive.from_json('{"modelName": "mlp", "modelVersion": "1.0"}')
    assert older is not None and older.cache_hit is None


@pytest.mark.parametrize("message", ["marserve extract: sha256 mismatch", "[1, 2]", "", "null"])
def test_a_termination_message_that_is_no_record_reads_as_none(message: str) -> None:
    assert contract.ExtractedArchive.from_json(message) is None


def test_the_worker_image_serves_from_the_model_dir() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"{contract.WORKER_ENV.model_store}={contract.MODEL_DIR}" in dockerfile
