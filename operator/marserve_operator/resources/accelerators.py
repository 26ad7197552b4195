"""How an accelerator type becomes extended resources and tolerations on the model's pods.

No node selector is added: requesting the extended resource already restricts scheduling to
nodes whose device plugin advertises it, while feature-discovery labels may not be installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from marserve_operator.settings import OperatorSettings
from marserve_operator.spec import Accelerator


def resource_name(accelerator: Accelerator, settings: OperatorSettings) -> str | None:
    """The device plugin's extended resource for this accelerator type, None for CPU only."""
    names = {
        "nvidia": "nvidia.com/gpu",
        "amd": "amd.com/gpu",
        "intel-xpu": settings.intel_gpu_resource,
    }
    return names.get(accelerator.type)


def container_resources(
    *,
    accelerator: Accelerator,
    user: Mapping[str, Mapping[str, Any]] | None,
    settings: OperatorSettings,
) -> dict[str, dict[str, Any]]:
    """The user's requests and limits plus the accelerator count in both (extended resources
    cannot be overcommitted, so requests must equal limits)."""
    result = {key: dict((user or {}).get(key) or {}) for key in ("requests", "limits")}
    name = resource_name(accelerator, settings)
    if name is not None:
        result["requests"][name] = str(accelerator.count)
        result["limits"][name] = str(accelerator.count)
    return {key: value for key, value in result.items() if value}


def tolerations(
    *,
    accelerator: Accelerator,
    user: Iterable[Mapping[str, Any]],
    settings: OperatorSettings,
) -> list[dict[str, Any]]:
    """Tolerates the taint GPU node pools conventionally carry (the resource name, NoSchedule),
    then the user's tolerations; duplicates are dropped."""
    merged: list[dict[str, Any]] = []
    name = resource_name(accelerator, settings)
    if name is not None:
        merged.append({"key": name, "operator": "Exists", "effect": "NoSchedule"})
    for toleration in user:
        if dict(toleration) not in merged:
            merged.append(dict(toleration))
    return merged


def device_visibility_env(accelerator: Accelerator) -> list[dict[str, str]]:
    """A CPU-only pod on a GPU node would otherwise see every GPU through the NVIDIA runtime's
    default NVIDIA_VISIBLE_DEVICES=all."""
    if accelerator.type == "none":
        return [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
    return []
