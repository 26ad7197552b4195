"""The server's configuration: one typed object built once from flags, environment and file.

Server options resolve as flag > `MARSERVE_*` environment > `config.properties` > built-in
default. Per-model settings put the model's YAML below the flags and the environment: pods set
the environment from their InferenceModel, whose batching and timeout must win over the
archive's own tuning, while `config.properties` keeps TorchServe's meaning of a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marserve.contract import (
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    INFERENCE_PORT,
    MANAGEMENT_PORT,
    METRICS_PORT,
)
from marserve.model_packages import PackageIndex


class ConfigError(ValueError):
    """A configuration value the server cannot use; the message names the option and source."""


@dataclass(frozen=True)
class ModelSettings:
    """Batching, scaling and time limits of one model, needed before any worker starts."""

    batch_size: int = 1
    max_batch_delay_ms: int = 100
    min_workers: int = 1
    max_workers: int = 1
    response_timeout_s: float = 120.0
    startup_timeout_s: float = 120.0
    job_queue_size: int = 100
    device_ids: tuple[int, ...] = ()
    device_type: str = ""
    max_worker_memory_mb: int = 0  # 0: workers are never recycled for memory


@dataclass(frozen=True)
class ModelLayer:
    """One source of per-model settings; None means "not said here"."""

    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    workers: int | None = None
    response_timeout_s: float | None = None
    job_queue_size: int | None = None
    max_worker_memory_mb: int | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything `marserve serve` was told, resolved once and passed down."""

    model_store: Path | None = None
    models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    inference_port: int = INFERENCE_PORT.number
    management_port: int = MANAGEMENT_PORT.number
    metrics_port: int = METRICS_PORT.number
    # 0: that gRPC port is off.
    grpc_inference_port: int = GRPC_INFERENCE_PORT.number
    grpc_management_port: int = GRPC_MANAGEMENT_PORT.number
    handler: str | None = None
    token_file: Path | None = None
    log_format: str = "text"
    grace_period_s: float = 30.0
    max_request_size: int = 6_553_500
    max_response_size: int = 6_553_500
    worker_grace_s: float = 5.0
    worker_idle_s: float = 60.0
    install_model_deps: bool = False  # off, as TorchServe's install_py_dep_per_model
    model_packages_cache: Path | None = None  # None: the user's cache folder
    package_index: PackageIndex = field(default_factory=PackageIndex)
    model_overrides: ModelLayer = field(default_factory=ModelLayer)
    model_defaults: ModelLayer = field(default_factory=ModelLayer)

    def model_settings(self, yaml_config: Mapping[str, Any]) -> ModelSettings:
        """Merges flag overrides, the model's YAML and the defaults into one model's settings."""
        over, base = self.model_overrides, self.model_defaults
        workers = _first(over.workers, _yaml_int(yaml_config, "minWorkers"), base.workers, 1)
        max_workers = _first(over.workers, _yaml_int(yaml_config, "maxWorkers"), workers)
        device_ids = yaml_config.get("deviceIds") or ()
        if not isinstance(device_ids, list | tuple) or not all(
            isinstance(i, int) for i in device_ids
        ):
            raise ConfigError(f"deviceIds must be a list of integers, not {device_ids!r}")
        return ModelSettings(
            batch_size=max(
                1,
                _first(over.batch_size, _yaml_int(yaml_config, "batchSize"), base.batch_size, 1),
            ),
            max_batch_delay_ms=max(
                0,
                _first(
                    over.max_batch_delay_ms,
                    _yaml_int(yaml_config, "maxBatchDelay"),
                    base.max_batch_delay_ms,
                    100,
                ),
            ),
            min_workers=max(1, workers),
            max_workers=max(1, workers, max_workers),
            response_timeout_s=float(
                _first(
                    over.response_timeout_s,
                    _yaml_int(yaml_config, "responseTimeout"),
                    base.response_timeout_s,
                    120,
                )
            ),
            startup_timeout_s=float(_first(_yaml_int(yaml_config, "startupTimeout"), 120)),
            job_queue_size=max(
                1,
                _first(
                    over.job_queue_size,
                    _yaml_int(yaml_config, "jobQueueSize") or None,
                    base.job_queue_size,
                    100,
                ),
            ),
            device_ids=tuple(device_ids),
            device_type=str(yaml_config.get("deviceType", "")),
            max_worker_memory_mb=max(
                0,
                _first(
                    over.max_worker_memory_mb,
                    _yaml_int(yaml_config, "maxWorkerMemoryMB"),
                    base.max_worker_memory_mb,
                    0,
                ),
            ),
        )


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _yaml_int(yaml_config: Mapping[str, Any], key: str) -> int | None:
    value = yaml_config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"model YAML {key} must be a number, not {value!r}")
    return int(value)
