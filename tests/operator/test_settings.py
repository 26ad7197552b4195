"""OperatorSettings.from_env: defaults, parsing and errors that name the variable."""

from __future__ import annotations

import dataclasses

import pytest

from marserve_operator.settings import DEFAULT_WORKER_IMAGE, OperatorSettings, SettingsError


def test_empty_environment_gives_defaults() -> None:
    settings = OperatorSettings.from_env({})
    assert settings == OperatorSettings()
    assert settings.worker_image == DEFAULT_WORKER_IMAGE == "ghcr.io/marserve/worker:0.1.0"
    assert settings.watch_namespaces == () and settings.cluster_wide


def test_every_variable_is_read() -> None:
    settings = OperatorSettings.from_env(
        {
            "MARSERVE_WORKER_IMAGE": "registry.local/worker:1.2",
            "MARSERVE_WATCH_NAMESPACES": " ml, serving ,ml,, ",
            "MARSERVE_TERMINATION_GRACE_SECONDS": "10",
            "MARSERVE_PRE_STOP_SECONDS": "0",
            "MARSERVE_STARTUP_BUDGET_SECONDS": "600",
            "MARSERVE_PROMETHEUS_URL": "http://prom.monitoring:9090/",
            "MARSERVE_MODEL_VOLUME_SIZE_LIMIT": "20Gi",
            "MARSERVE_INTEL_GPU_RESOURCE": "gpu.intel.com/xe",
            "MARSERVE_HTTP_ADD_ON_INTERCEPTOR": "interceptor.keda-http:8080",
            "UNRELATED": "ignored",
        }
    )
    assert settings == OperatorSettings(
        worker_image="registry.local/worker:1.2",
        watch_namespaces=("ml", "serving"),
        termination_grace_seconds=10,
        pre_stop_seconds=0,
        startup_budget_seconds=600,
        prometheus_url="http://prom.monitoring:9090",
        model_volume_size_limit="20Gi",
        intel_gpu_resource="gpu.intel.com/xe",
        http_add_on_interceptor="interceptor.keda-http:8080",
    )
    assert not settings.cluster_wide


def test_blank_values_keep_defaults() -> None:
    assert OperatorSettings.from_env({"MARSERVE_WORKER_IMAGE": "  "}) == OperatorSettings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MARSERVE_STARTUP_BUDGET_SECONDS", "ten"),
        ("MARSERVE_PRE_STOP_SECONDS", "-1"),
        ("MARSERVE_PROMETHEUS_URL", "prometheus:9090"),
        ("MARSERVE_HTTP_ADD_ON_INTERCEPTOR", "http://interceptor:8080"),
        ("MARSERVE_HTTP_ADD_ON_INTERCEPTOR", "interceptor"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        OperatorSettings.from_env({name: value})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        OperatorSettings().worker_image = "x"  # type: ignore[misc]
