"""Where each server option comes from: its flag, `MARSERVE_*` variable and config.properties key.

`build_config` resolves them once into the `ServerConfig` that the rest of the server receives.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from marserve.contract import (
    GRPC_INFERENCE_PORT,
    GRPC_MANAGEMENT_PORT,
    INFERENCE_PORT,
    MANAGEMENT_PORT,
    METRICS_PORT,
    WORKER_ENV,
)
from marserve.model_packages import PackageIndex
from marserve.server.config import ConfigError, ModelLayer, ServerConfig


@dataclass(frozen=True)
class Option:
    """One option: its flag, environment variable, config.properties key and parser."""

    dest: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    properties_key: str | None = None
    switch: bool = False  # a flag without a value; its variable and key take true or false


def _models(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.replace(",", " ").split() if part)


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return lowered in ("true", "1", "yes")


def _port_or_off(text: str) -> int:
    """A gRPC port number; 0 or `off` turns that port off."""
    return 0 if text.strip().lower() == "off" else int(text)


def _log_format(text: str) -> str:
    if text not in ("json", "text"):
        raise ValueError("must be json or text")
    return text


OPTIONS: tuple[Option, ...] = (
    Option(
        "model_store",
        "--model-store",
        WORKER_ENV.model_store,
        Path,
        "folder of .mar files",
        "model_store",
    ),
    Option("host", "--host", WORKER_ENV.host, str, "address to listen on (default 127.0.0.1)"),
    Option(
        "inference_port",
        "--inference-port",
        WORKER_ENV.inference_port,
        int,
        f"inference API port (default {INFERENCE_PORT.number})",
    ),
    Option(
        "management_port",
        "--management-port",
        WORKER_ENV.management_port,
        int,
        f"management API port (default {MANAGEMENT_PORT.number})",
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        WORKER_ENV.metrics_port,
        int,
        f"metrics port (default {METRICS_PORT.number})",
    ),
    Option(
        "grpc_inference_port",
        "--grpc-inference-port",
        WORKER_ENV.grpc_inference_port,
        _port_or_off,
        f"TorchServe's gRPC inference API port, 0 or off: none (default "
        f"{GRPC_INFERENCE_PORT.number})",
        "grpc_inference_port",
    ),
    Option(
        "grpc_management_port",
        "--grpc-management-port",
        WORKER_ENV.grpc_management_port,
        _port_or_off,
        f"TorchServe's gRPC management API port, 0 or off: none (default "
        f"{GRPC_MANAGEMENT_PORT.number})",
        "grpc_management_port",
    ),
    Option("handler", "--handler", WORKER_ENV.handler, str, "handler overriding the manifest's"),
    Option(
        "token_file",
        "--token-file",
        WORKER_ENV.token_file,
        Path,
        "file holding the bearer token; auth is off without it",
        "token_file",
    ),
    Option(
        "log_format",
        "--log-format",
        WORKER_ENV.log_format,
        _log_format,
        "json or text (default text)",
    ),
    Option(
        "grace_period_s",
        "--grace-period-seconds",
        WORKER_ENV.grace_period_seconds,
        float,
        "how long SIGTERM waits for in-flight requests (default 30)",
    ),
    Option(
        "max_request_size",
        "--max-request-size",
        WORKER_ENV.max_request_size,
        int,
        "largest request body in bytes (default 6553500)",
        "max_request_size",
    ),
    Option(
        "worker_grace_s",
        "--worker-grace-seconds",
        WORKER_ENV.worker_grace_seconds,
        float,
        "how long past its deadline a stuck worker may run before it is killed (default 5)",
    ),
    Option(
        "worker_idle_s",
        "--worker-idle-seconds",
        WORKER_ENV.worker_idle_seconds,
        float,
        "how long a model keeps a spare worker above minWorkers before retiring it (default 60)",
    ),
    Option(
        "max_response_size",
        "--max-response-size",
        WORKER_ENV.max_response_size,
        int,
        "largest response body in bytes (default 6553500)",
        "max_response_size",
    ),
    Option(
        "install_model_deps",
        "--install-model-deps",
        WORKER_ENV.install_model_deps,
        _boolean,
        "pip-install each archive's requirementsFile into a folder of that model's own",
        "install_py_dep_per_model",
        switch=True,
    ),
    Option(
        "model_packages_cache",
        "--model-packages-cache",
        WORKER_ENV.model_packages_cache,
        Path,
        "where model packages are kept for reuse (default ~/.cache/marserve/model-packages)",
    ),
)

MODEL_OPTIONS: tuple[Option, ...] = (
    Option("batch_size", "--batch-size", WORKER_ENV.batch_size, int, "largest dynamic batch"),
    Option(
        "max_batch_delay_ms",
        "--max-batch-delay-ms",
        WORKER_ENV.max_batch_delay_ms,
        int,
        "longest wait for a batch to fill under load",
    ),
    Option(
        "workers",
        "--workers",
        WORKER_ENV.workers,
        int,
        "worker processes per model",
        "default_workers_per_model",
    ),
    Option(
        "response_timeout_s",
        "--response-timeout-seconds",
        WORKER_ENV.response_timeout_seconds,
        float,
        "per-request deadline",
        "default_response_timeout",
    ),
    Option(
        "job_queue_size",
        "--job-queue-size",
        WORKER_ENV.job_queue_size,
        int,
        "queued requests per model before 429",
        "job_queue_size",
    ),
    Option(
        "max_worker_memory_mb",
        "--worker-memory-limit-mb",
        WORKER_ENV.worker_memory_limit_mb,
        int,
        "resident memory in MiB past which a worker is replaced after its batch (default 0: off)",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds every option as a flag whose default is None, so "not given" stays visible."""
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME=PATH",
        help=(
            f"models to serve: NAME=FILE.mar, NAME=DIR, FILE.mar, or all (env {WORKER_ENV.models})"
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"a TorchServe config.properties file (subset; env {WORKER_ENV.config_file})",
    )
    for option in OPTIONS + MODEL_OPTIONS:
        if option.switch:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                action="store_const",
                const="true",
                help=f"{option.help} (env {option.env}=true)",
            )
            continue
        parser.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.env.removeprefix("MARSERVE_"),
            help=f"{option.help} (env {option.env})",
        )


def read_properties(path: Path) -> dict[str, str]:
    """Reads `key=value` lines of a TorchServe config.properties, skipping comments."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    properties: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#!" or "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        properties[key.strip()] = value.strip()
    return properties


def _address_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Turns TorchServe's `*_address` URLs into host and port values."""
    values: dict[str, str] = {}
    for kind in ("inference", "management", "metrics"):
        address = properties.get(f"{kind}_address")
        if not address:
            continue
        parts = urlsplit(address if "://" in address else f"http://{address}")
        if parts.hostname and kind == "inference":
            values["host"] = parts.hostname
        if parts.port:
            values[f"{kind}_port"] = str(parts.port)
    return values


def build_config(
    args: argparse.Namespace, *, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Resolves flags, environment and config file into the one `ServerConfig`."""
    env = os.environ if environ is None else environ
    properties: dict[str, str] = {}
    config_file = getattr(args, "config", None) or env.get(WORKER_ENV.config_file)
    if config_file:
        properties = read_properties(Path(config_file))
    fallback = _address_properties(properties)

    def resolve(option: Option, *, overrides: bool, defaults: bool) -> Any:
        sources: list[tuple[str, str | None]] = []
        if overrides:
            sources.append((option.flag, getattr(args, option.dest, None)))
            sources.append((option.env, env.get(option.env) or None))
        if defaults:
            key = option.properties_key
            sources.append((f"{key} in {config_file}", properties.get(key) if key else None))
            sources.append((f"address in {config_file}", fallback.get(option.dest)))
        for source, raw in sources:
            if raw is None:
                continue
            try:
                return option.parse(raw)
            except ValueError as error:
                raise ConfigError(f"{source}={raw!r} is not valid: {error}") from error
        return None

    values = {
        option.dest: value
        for option in OPTIONS
        if (value := resolve(option, overrides=True, defaults=True)) is not None
    }
    flagged = getattr(args, "models", None)
    models = (
        model_specs(flagged)
        if flagged
        else _models(env.get(WORKER_ENV.models) or properties.get("load_models", ""))
    )
    return ServerConfig(
        models=tuple(models),
        package_index=PackageIndex.from_environ(env),
        model_overrides=ModelLayer(
            **{o.dest: resolve(o, overrides=True, defaults=False) for o in MODEL_OPTIONS}
        ),
        model_defaults=ModelLayer(
            **{o.dest: resolve(o, overrides=False, defaults=True) for o in MODEL_OPTIONS}
        ),
        **values,
    )


def model_specs(models: Sequence[str]) -> Sequence[str]:
    """Splits any comma-joined entries so `--models a=x,b=y` and `--models a=x b=y` agree."""
    return [spec for entry in models for spec in _models(entry)]
