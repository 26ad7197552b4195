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


def _models(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.replace(",", " ").split() if part)


def _log_format(text: str) -> str:
    if text not in ("json", "text"):
        raise ValueError("must be json or text")
    return text


OPTIONS: tuple[Option, ...] = (
    Option(
        "model_store",
        "--model-store",
        "MARSERVE_MODEL_STORE",
        Path,
        "folder of .mar files",
        "model_store",
    ),
    Option("host", "--host", "MARSERVE_HOST", str, "address to listen on (default 127.0.0.1)"),
    Option(
        "inference_port",
        "--inference-port",
        "MARSERVE_INFERENCE_PORT",
        int,
        "inference API port (default 8080)",
    ),
    Option(
        "management_port",
        "--management-port",
        "MARSERVE_MANAGEMENT_PORT",
        int,
        "management API port (default 8081)",
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        "MARSERVE_METRICS_PORT",
        int,
        "metrics port (default 8082)",
    ),
    Option("handler", "--handler", "MARSERVE_HANDLER", str, "handler overriding the manifest's"),
    Option(
        "token_file",
        "--token-file",
        "MARSERVE_TOKEN_FILE",
        Path,
        "file holding the bearer token; auth is off without it",
        "token_file",
    ),
    Option(
        "log_format",
        "--log-format",
        "MARSERVE_LOG_FORMAT",
        _log_format,
        "json or text (default text)",
    ),
    Option(
        "grace_period_s",
        "--grace-period-seconds",
        "MARSERVE_GRACE_PERIOD_SECONDS",
        float,
        "how long SIGTERM waits for in-flight requests (default 30)",
    ),
    Option(
        "max_request_size",
        "--max-request-size",
        "MARSERVE_MAX_REQUEST_SIZE",
        int,
        "largest request body in bytes (default 6553500)",
        "max_request_size",
    ),
    Option(
        "worker_grace_s",
        "--worker-grace-seconds",
        "MARSERVE_WORKER_GRACE_SECONDS",
        float,
        "how long past its deadline a stuck worker may run before it is killed (default 5)",
    ),
    Option(
        "max_response_size",
        "--max-response-size",
        "MARSERVE_MAX_RESPONSE_SIZE",
        int,
        "largest response body in bytes (default 6553500)",
        "max_response_size",
    ),
)

MODEL_OPTIONS: tuple[Option, ...] = (
    Option("batch_size", "--batch-size", "MARSERVE_BATCH_SIZE", int, "largest dynamic batch"),
    Option(
        "max_batch_delay_ms",
        "--max-batch-delay-ms",
        "MARSERVE_MAX_BATCH_DELAY_MS",
        int,
        "longest wait for a batch to fill under load",
    ),
    Option(
        "workers",
        "--workers",
        "MARSERVE_WORKERS",
        int,
        "worker processes per model",
        "default_workers_per_model",
    ),
    Option(
        "response_timeout_s",
        "--response-timeout-seconds",
        "MARSERVE_RESPONSE_TIMEOUT_SECONDS",
        float,
        "per-request deadline",
        "default_response_timeout",
    ),
    Option(
        "job_queue_size",
        "--job-queue-size",
        "MARSERVE_JOB_QUEUE_SIZE",
        int,
        "queued requests per model before 429",
        "job_queue_size",
    ),
    Option(
        "max_worker_memory_mb",
        "--worker-memory-limit-mb",
        "MARSERVE_WORKER_MEMORY_LIMIT_MB",
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
        help="models to serve: NAME=FILE.mar, NAME=DIR, FILE.mar, or all (env MARSERVE_MODELS)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a TorchServe config.properties file (subset; env MARSERVE_CONFIG_FILE)",
    )
    for option in OPTIONS + MODEL_OPTIONS:
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
    config_file = getattr(args, "config", None) or env.get("MARSERVE_CONFIG_FILE")
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
        else _models(env.get("MARSERVE_MODELS") or properties.get("load_models", ""))
    )
    return ServerConfig(
        models=tuple(models),
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
