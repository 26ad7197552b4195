"""Configuration precedence.

Server options: flag > MARSERVE_* environment > config.properties > default. Per-model settings:
flag > MARSERVE_* environment (a pod's per-deployment override) > model YAML > config.properties.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from marserve.server import config, options


def parse(argv: list[str], env: dict[str, str] | None = None) -> config.ServerConfig:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    return options.build_config(parser.parse_args(argv), environ=env or {})


def test_defaults_match_torchserve_ports_and_limits() -> None:
    built = parse([])
    assert (built.host, built.inference_port, built.management_port, built.metrics_port) == (
        "127.0.0.1", 8080, 8081, 8082,
    )  # fmt: skip
    assert built.max_request_size == 6_553_500
    assert built.token_file is None
    assert built.model_settings({}) == config.ModelSettings()


def test_every_operator_variable_is_read() -> None:
    env = {
        "MARSERVE_MODEL_STORE": "/store",
        "MARSERVE_MODELS": "resnet=/mnt/models, bert=/mnt/bert",
        "MARSERVE_HOST": "0.0.0.0",
        "MARSERVE_INFERENCE_PORT": "9080",
        "MARSERVE_MANAGEMENT_PORT": "9081",
        "MARSERVE_METRICS_PORT": "9082",
        "MARSERVE_BATCH_SIZE": "4",
        "MARSERVE_MAX_BATCH_DELAY_MS": "7",
        "MARSERVE_WORKERS": "3",
        "MARSERVE_RESPONSE_TIMEOUT_SECONDS": "9",
        "MARSERVE_JOB_QUEUE_SIZE": "11",
        "MARSERVE_HANDLER": "my_handler:handle",
        "MARSERVE_TOKEN_FILE": "/secrets/token",
        "MARSERVE_LOG_FORMAT": "json",
        "MARSERVE_GRACE_PERIOD_SECONDS": "12",
        "MARSERVE_MAX_REQUEST_SIZE": "1000",
    }
    built = parse([], env)
    assert built.model_store == Path("/store")
    assert built.models == ("resnet=/mnt/models", "bert=/mnt/bert")
    assert (built.host, built.inference_port, built.management_port, built.metrics_port) == (
        "0.0.0.0", 9080, 9081, 9082,
    )  # fmt: skip
    assert built.handler == "my_handler:handle"
    assert built.token_file == Path("/secrets/token")
    assert (built.log_format, built.grace_period_s, built.max_request_size) == ("json", 12, 1000)
    settings = built.model_settings({})
    assert (settings.batch_size, settings.max_batch_delay_ms, settings.min_workers) == (4, 7, 3)
    assert (settings.response_timeout_s, settings.job_queue_size) == (9, 11)


def test_environment_overrides_model_yaml_and_flags_beat_both() -> None:
    yaml_config = {"batchSize": 8, "maxBatchDelay": 50, "minWorkers": 2, "responseTimeout": 30}
    env = {"MARSERVE_BATCH_SIZE": "4", "MARSERVE_WORKERS": "3", "MARSERVE_JOB_QUEUE_SIZE": "5"}
    from_yaml = parse([], {}).model_settings(yaml_config)
    assert (from_yaml.batch_size, from_yaml.min_workers, from_yaml.max_batch_delay_ms) == (8, 2, 50)
    from_env = parse([], env).model_settings(yaml_config)
    assert (from_env.batch_size, from_env.min_workers, from_env.job_queue_size) == (4, 3, 5)
    assert from_env.max_batch_delay_ms == 50
    flagged = parse(["--batch-size", "16", "--workers", "1"], env).model_settings(yaml_config)
    assert (flagged.batch_size, flagged.min_workers, flagged.max_batch_delay_ms) == (16, 1, 50)


def test_config_properties_stay_below_model_yaml(tmp_path: Path) -> None:
    properties = tmp_path / "config.properties"
    properties.write_text("default_workers_per_model=4\njob_queue_size=7\n")
    settings = parse(["--config", str(properties)]).model_settings({"minWorkers": 2})
    assert (settings.min_workers, settings.job_queue_size) == (2, 7)


def test_flags_beat_environment_and_environment_beats_file(tmp_path: Path) -> None:
    properties = tmp_path / "config.properties"
    properties.write_text(
        "# TorchServe style\n"
        "inference_address=http://0.0.0.0:7080\n"
        "management_address=http://0.0.0.0:7081\n"
        "job_queue_size=42\n"
        "default_workers_per_model=2\n"
        "max_request_size=123\n"
        "load_models=a=a.mar,b=b.mar\n"
    )
    from_file = parse(["--config", str(properties)])
    assert (from_file.host, from_file.inference_port, from_file.management_port) == (
        "0.0.0.0", 7080, 7081,
    )  # fmt: skip
    assert from_file.models == ("a=a.mar", "b=b.mar")
    assert from_file.max_request_size == 123
    assert from_file.model_settings({}).job_queue_size == 42
    assert from_file.model_settings({}).min_workers == 2
    env = {"MARSERVE_INFERENCE_PORT": "6080", "MARSERVE_MODELS": "all"}
    from_env = parse(["--config", str(properties)], env)
    assert (from_env.inference_port, from_env.models) == (6080, ("all",))
    flagged = parse(["--config", str(properties), "--inference-port", "5080"], env)
    assert flagged.inference_port == 5080


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--inference-port", "http"], {}, "--inference-port"),
        ([], {"MARSERVE_LOG_FORMAT": "xml"}, "MARSERVE_LOG_FORMAT"),
        ([], {"MARSERVE_BATCH_SIZE": "many"}, "MARSERVE_BATCH_SIZE"),
    ],
)
def test_bad_values_name_their_source(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(config.ConfigError, match=needle):
        parse(argv, env)


def test_bad_model_yaml_is_a_config_error() -> None:
    with pytest.raises(config.ConfigError, match="batchSize"):
        parse([]).model_settings({"batchSize": "eight"})
    with pytest.raises(config.ConfigError, match="deviceIds"):
        parse([]).model_settings({"deviceIds": "0,1"})


def test_worker_memory_limit_is_off_by_default_and_env_and_flag_beat_model_yaml() -> None:
    yaml_config = {"maxWorkerMemoryMB": 900}
    assert parse([]).model_settings({}).max_worker_memory_mb == 0
    assert parse([]).model_settings(yaml_config).max_worker_memory_mb == 900
    env = {"MARSERVE_WORKER_MEMORY_LIMIT_MB": "700"}
    assert parse([], env).model_settings({}).max_worker_memory_mb == 700
    assert parse([], env).model_settings(yaml_config).max_worker_memory_mb == 700
    flagged = parse(["--worker-memory-limit-mb", "500"], env).model_settings(yaml_config)
    assert flagged.max_worker_memory_mb == 500
    with pytest.raises(config.ConfigError, match="MARSERVE_WORKER_MEMORY_LIMIT_MB"):
        parse([], {"MARSERVE_WORKER_MEMORY_LIMIT_MB": "1G"})
    with pytest.raises(config.ConfigError, match="maxWorkerMemoryMB"):
        parse([]).model_settings({"maxWorkerMemoryMB": "1G"})


def test_model_dependencies_are_off_by_default_and_read_like_torchserve(tmp_path: Path) -> None:
    assert parse([]).install_model_deps is False
    assert parse(["--install-model-deps"]).install_model_deps is True
    assert parse([], {"MARSERVE_INSTALL_MODEL_DEPS": "true"}).install_model_deps is True
    properties = tmp_path / "config.properties"
    properties.write_text("install_py_dep_per_model=true\n")
    assert parse(["--config", str(properties)]).install_model_deps is True
    off = {"MARSERVE_INSTALL_MODEL_DEPS": "false"}
    assert parse(["--config", str(properties)], off).install_model_deps is False
    with pytest.raises(config.ConfigError, match="MARSERVE_INSTALL_MODEL_DEPS='maybe'"):
        parse([], {"MARSERVE_INSTALL_MODEL_DEPS": "maybe"})


def test_the_package_index_and_cache_come_from_the_environment() -> None:
    built = parse(
        [],
        {
            "MARSERVE_MODEL_PACKAGES_CACHE": "/var/cache/models",
            "MARSERVE_PACKAGE_INDEX_URL": "https://pypi.corp/simple",
            "MARSERVE_PACKAGE_INDEX_USERNAME": "ci",
        },
    )
    assert built.model_packages_cache == Path("/var/cache/models")
    assert built.package_index.index_url == "https://pypi.corp/simple"
    assert built.package_index.username == "ci"


def test_grpc_ports_default_to_torchserves_and_each_can_be_turned_off(tmp_path: Path) -> None:
    assert (parse([]).grpc_inference_port, parse([]).grpc_management_port) == (7070, 7071)
    properties = tmp_path / "config.properties"
    properties.write_text("grpc_inference_port=9070\ngrpc_management_port=9071\n")
    from_file = parse(["--config", str(properties)])
    assert (from_file.grpc_inference_port, from_file.grpc_management_port) == (9070, 9071)
    env = {"MARSERVE_GRPC_INFERENCE_PORT": "off", "MARSERVE_GRPC_MANAGEMENT_PORT": "8071"}
    from_env = parse(["--config", str(properties)], env)
    assert (from_env.grpc_inference_port, from_env.grpc_management_port) == (0, 8071)
    flagged = parse(["--grpc-inference-port", "6070", "--grpc-management-port", "OFF"], env)
    assert (flagged.grpc_inference_port, flagged.grpc_management_port) == (6070, 0)
    with pytest.raises(config.ConfigError, match="--grpc-inference-port"):
        parse(["--grpc-inference-port", "none"])
