"""The user's `spec.pod` merged into the pod template the operator built: additions only, with
the operator's labels, annotations, volumes and mounts winning wherever both name the same
thing (`spec_pod` has already refused such a spec; this keeps the rule even if it had not)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from marserve_operator.spec import ModelSpec
from marserve_operator.spec_pod import SHM_MOUNT_PATH

SHM_VOLUME: Final = "dshm"


def _spread(constraint: Mapping[str, Any], selector: Mapping[str, str]) -> dict[str, Any]:
    """A spread constraint without a labelSelector counts no pods; the model's own are meant."""
    result = copy.deepcopy(dict(constraint))
    result.setdefault("labelSelector", {"matchLabels": dict(selector)})
    return result


def _named(existing: list[dict[str, Any]], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    taken = {item["name"] for item in existing}
    return existing + [item for item in added if item["name"] not in taken]


def customised(
    template: Mapping[str, Any], model: ModelSpec, *, selector: Mapping[str, str]
) -> dict[str, Any]:
    """A copy of the pod template with `spec.pod` added to it and to its worker container."""
    pod = model.pod
    result = copy.deepcopy(dict(template))
    meta, spec = result["metadata"], result["spec"]
    meta["labels"] = {**(pod.labels or {}), **meta["labels"]}
    meta["annotations"] = {**(pod.annotations or {}), **meta["annotations"]}
    volumes = [copy.deepcopy(dict(volume)) for volume in pod.volumes]
    mounts = [copy.deepcopy(dict(mount)) for mount in pod.volume_mounts]
    if pod.shm_size is not None:
        volumes.append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": pod.shm_size}}
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_MOUNT_PATH})
    spec["volumes"] = _named(spec["volumes"], volumes)
    (worker,) = [c for c in spec["containers"] if c["name"] == "worker"]
    if mounts:
        worker["volumeMounts"] = _named(worker["volumeMounts"], mounts)
    if pod.env_from:
        worker["envFrom"] = [*worker.get("envFrom", []), *map(dict, pod.env_from)]
    if pod.priority_class_name is not None:
        spec["priorityClassName"] = pod.priority_class_name
    if pod.topology_spread_constraints:
        spec["topologySpreadConstraints"] = [
            _spread(constraint, selector) for constraint in pod.topology_spread_constraints
        ]
    return result
