"""`spec.pod`: what a platform team adds to a model's pods (labels and annotations for meshes and
cost reports, volumes, envFrom, shared memory, priority, topology spread), parsed so that none of
it can replace what the operator sets: its selector labels and annotations, its volumes and
mount paths, its security settings (no field here reaches a securityContext).

The CRD's CEL rules say the same; this is their mirror for clusters that skip CEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from marserve.contract import MANAGED_BY_LABEL
from marserve_operator.spec_fields import SpecError, SpecFields

# Labels and annotations the operator sets or selects by; its own prefix is kept for the future.
OPERATOR_PREFIX: Final = "serving.marserve.io/"
RESERVED_LABELS: Final = ("app.kubernetes.io/name", "app.kubernetes.io/instance", MANAGED_BY_LABEL)
RESERVED_ANNOTATIONS: Final = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
# The operator's volumes in the pod, and the `marserve-` prefix for those it may add.
RESERVED_VOLUMES: Final = (
    "models",
    "tmp",
    "archive",
    "archive-cache",
    "archive-credentials",
    "model-packages",
    "auth-token",
    "dshm",
)
RESERVED_VOLUME_PREFIX: Final = "marserve-"
# Paths the operator mounts: nothing may be mounted on, inside or above them.
RESERVED_MOUNT_PATHS: Final = (
    "/mnt/models",
    "/mnt/archive",
    "/mnt/archive-cache",
    "/mnt/model-packages",
    "/tmp",
    "/dev/shm",
    "/var/run/secrets/marserve/auth",
    "/var/run/secrets/marserve/archive",
)
SHM_MOUNT_PATH: Final = "/dev/shm"
_ENV_PREFIX_RESERVED: Final = "MARSERVE_"
_QUANTITY: Final = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?"
)


@dataclass(frozen=True)
class PodCustomisation:
    """The user's additions to the pod template; Kubernetes objects stay plain data."""

    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    shm_size: str | None = None
    priority_class_name: str | None = None
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()


def overlaps_reserved_path(path: str) -> bool:
    """Whether a mount at `path` would hide or sit inside a path the operator mounts."""
    clean = path.rstrip("/") or "/"
    return clean == "/" or any(
        clean == reserved or clean.startswith(reserved + "/") or reserved.startswith(clean + "/")
        for reserved in RESERVED_MOUNT_PATHS
    )


def _string_map(fields: SpecFields, key: str, reserved: tuple[str, ...]) -> dict[str, str] | None:
    values = fields.mapping(key)
    if values is None:
        return None
    for name, value in values.items():
        if not isinstance(value, str):
            raise SpecError(f"{fields.where(key)}.{name} must be a string")
        if name in reserved or name.startswith(OPERATOR_PREFIX):
            raise SpecError(
                f"{fields.where(key)} sets {name}, which the operator sets "
                f"({', '.join(reserved)} and {OPERATOR_PREFIX}*)"
            )
    return dict(values)


def _volumes(fields: SpecFields) -> tuple[Mapping[str, Any], ...]:
    volumes = fields.items("volumes")
    for index, volume in enumerate(volumes):
        name = SpecFields(volume, f"{fields.where('volumes')}[{index}]").text("name", required=True)
        if name in RESERVED_VOLUMES or str(name).startswith(RESERVED_VOLUME_PREFIX):
            raise SpecError(
                f"{fields.where('volumes')}[{index}] is named {name}, a name the operator uses "
                f"({', '.join(RESERVED_VOLUMES)} and {RESERVED_VOLUME_PREFIX}*)"
            )
    return volumes


def _volume_mounts(
    fields: SpecFields, volumes: tuple[Mapping[str, Any], ...]
) -> tuple[Mapping[str, Any], ...]:
    mounts = fields.items("volumeMounts")
    declared = {volume["name"] for volume in volumes}
    for index, mount in enumerate(mounts):
        where = f"{fields.where('volumeMounts')}[{index}]"
        mount_fields = SpecFields(mount, where)
        name = mount_fields.text("name", required=True)
        path = str(mount_fields.text("mountPath", required=True))
        if name not in declared:
            raise SpecError(f"{where} mounts {name}, which is not one of pod.volumes")
        if overlaps_reserved_path(path):
            raise SpecError(
                f"{where}.mountPath {path} overlaps a path the operator mounts "
                f"({', '.join(RESERVED_MOUNT_PATHS)}); use pod.shmSize for /dev/shm"
            )
    return mounts


def _env_from(fields: SpecFields) -> tuple[Mapping[str, Any], ...]:
    """Kubernetes lets `env` win over `envFrom`, so the variables the operator sets stay its
    own; a prefix that makes every imported name look like one of them is refused."""
    sources = fields.items("envFrom")
    for index, source in enumerate(sources):
        prefix = SpecFields(source, f"{fields.where('envFrom')}[{index}]").text("prefix") or ""
        if prefix.startswith(_ENV_PREFIX_RESERVED):
            raise SpecError(
                f"{fields.where('envFrom')}[{index}].prefix {prefix} is the operator's "
                f"({_ENV_PREFIX_RESERVED}*)"
            )
    return sources


def parse_pod(fields: SpecFields) -> PodCustomisation:
    """The spec's `pod` object, or SpecError naming the field that would override the operator."""
    volumes = _volumes(fields)
    shm_size = fields.text("shmSize")
    if shm_size is not None and not _QUANTITY.fullmatch(shm_size):
        raise SpecError(f"{fields.where('shmSize')} must be a quantity such as 1Gi, not {shm_size}")
    return PodCustomisation(
        labels=_string_map(fields, "labels", RESERVED_LABELS),
        annotations=_string_map(fields, "annotations", RESERVED_ANNOTATIONS),
        volumes=volumes,
        volume_mounts=_volume_mounts(fields, volumes),
        env_from=_env_from(fields),
        shm_size=shm_size,
        priority_class_name=fields.text("priorityClassName"),
        topology_spread_constraints=fields.items("topologySpreadConstraints"),
    )
