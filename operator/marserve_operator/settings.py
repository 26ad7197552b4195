"""The operator's configuration: one typed object read once from the environment and passed down."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from marserve.contract import OPERATOR_ENV

DEFAULT_WORKER_IMAGE: Final = "ghcr.io/marserve/worker:0.1.0"

_T = TypeVar("_T")


class SettingsError(ValueError):
    """An operator environment variable with a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator renders and watches InferenceModels, independent of any one model."""

    worker_image: str = DEFAULT_WORKER_IMAGE
    # Empty means every namespace (cluster-wide).
    watch_namespaces: tuple[str, ...] = ()
    # Grace given to a terminating pod on top of its requests' response timeout.
    termination_grace_seconds: int = 30
    # Time the pod keeps serving after it is marked for deletion, so endpoints drop it first.
    pre_stop_seconds: int = 5
    # How long a started pod may take to load its model before it is restarted (the startup
    # probe's budget); the Deployment's progress deadline adds time for the download.
    startup_budget_seconds: int = 1800
    # Prometheus that KEDA's prometheus trigger queries.
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    # emptyDir size limit for the extracted model; empty means unlimited.
    model_volume_size_limit: str = ""
    # The Intel device plugin names its resource by kernel driver (i915 or xe).
    intel_gpu_resource: str = "gpu.intel.com/i915"
    # HOST:PORT of the KEDA HTTP add-on's interceptor Service, where clients of a model that
    # scales from zero send requests.
    http_add_on_interceptor: str = "keda-add-ons-http-interceptor-proxy.keda.svc:8080"

    @property
    def cluster_wide(self) -> bool:
        return not self.watch_namespaces

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Reads MARSERVE_* variables; unset or empty ones keep their defaults."""
        defaults = cls()

        def read(name: str, default: _T, convert: Callable[[str], _T]) -> _T:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                return convert(raw)
            except ValueError as error:
                raise SettingsError(f"{name}={raw!r}: {error}") from None

        return cls(
            worker_image=read(OPERATOR_ENV.worker_image, defaults.worker_image, str),
            watch_namespaces=read(OPERATOR_ENV.watch_namespaces, (), _namespaces),
            termination_grace_seconds=read(
                OPERATOR_ENV.termination_grace_seconds, defaults.termination_grace_seconds, _seconds
            ),
            pre_stop_seconds=read(
                OPERATOR_ENV.pre_stop_seconds, defaults.pre_stop_seconds, _seconds
            ),
            startup_budget_seconds=read(
                OPERATOR_ENV.startup_budget_seconds, defaults.startup_budget_seconds, _seconds
            ),
            prometheus_url=read(OPERATOR_ENV.prometheus_url, defaults.prometheus_url, _url),
            model_volume_size_limit=read(OPERATOR_ENV.model_volume_size_limit, "", str),
            intel_gpu_resource=read(
                OPERATOR_ENV.intel_gpu_resource, defaults.intel_gpu_resource, str
            ),
            http_add_on_interceptor=read(
                OPERATOR_ENV.http_add_on_interceptor, defaults.http_add_on_interceptor, _address
            ),
        )


def _namespaces(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def _seconds(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number of seconds, 0 or more")
    return value


def _address(raw: str) -> str:
    host, _, port = raw.rpartition(":")
    if not host or "/" in raw or not port.isdigit():
        raise ValueError("must be HOST:PORT, such as keda-add-ons-http-interceptor-proxy.keda:8080")
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")
