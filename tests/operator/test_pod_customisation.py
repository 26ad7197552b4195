"""spec.pod: additions to the model's pods that reach the right places, validate strictly, and
can never replace what the operator sets (labels it selects by, its volumes and mount paths, its
scrape annotations, the variables it manages, its security settings)."""

from __future__ import annotations

from typing import Any

import pytest

from marserve_operator import resources, spec_pod
from marserve_operator.resources.pod_customisation import customised
from marserve_operator.spec import SpecError
from support.operator_fixtures import FULL_SPEC, SETTINGS, kube_validate, minimal_spec, model


def _template(**changes: Any) -> dict[str, Any]:
    template: dict[str, Any] = resources.deployment(model(spec=FULL_SPEC, **changes), SETTINGS)[
        "spec"
    ]["template"]
    return template


def _worker(template: dict[str, Any]) -> dict[str, Any]:
    (worker,) = [c for c in template["spec"]["containers"] if c["name"] == "worker"]
    return worker


def test_additions_reach_the_pod_and_the_worker_container() -> None:
    deployment = resources.deployment(model(spec=FULL_SPEC), SETTINGS)
    kube_validate(deployment)
    template = deployment["spec"]["template"]
    meta, pod = template["metadata"], template["spec"]
    assert meta["labels"]["team"] == "vision"
    assert meta["labels"].items() >= resources.labels(model()).items()
    assert meta["annotations"]["sidecar.istio.io/inject"] == "true"
    assert meta["annotations"]["prometheus.io/scrape"] == "true"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["datasets"] == {
        "name": "datasets",
        "persistentVolumeClaim": {"claimName": "datasets"},
    }
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    assert {"models", "tmp", "auth-token"} <= set(volumes)
    worker = _worker(template)
    assert {"name": "datasets", "mountPath": "/data", "readOnly": True} in worker["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in worker["volumeMounts"]
    assert worker["envFrom"] == [{"configMapRef": {"name": "model-settings"}, "prefix": "APP_"}]
    assert pod["priorityClassName"] == "inference"
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": resources.selector(model())}
    for init in pod["initContainers"]:  # the extractor and the dependency installer
        assert "envFrom" not in init or init["envFrom"] != worker["envFrom"]
        assert not any(m["name"] in ("datasets", "dshm") for m in init["volumeMounts"])


def test_a_spread_constraint_keeps_its_own_selector() -> None:
    own = {"matchLabels": {"tier": "gpu"}}
    constraint = {
        "maxSkew": 2,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": own,
    }
    template = _template(pod={"topologySpreadConstraints": [constraint]})
    assert template["spec"]["topologySpreadConstraints"] == [constraint]


def test_no_pod_section_leaves_the_template_as_it_was() -> None:
    """Existing models see no new pod template, so adding spec.pod rolls nothing out."""
    for m in (model(), model(spec=minimal_spec())):
        built = resources.pod_template(m, SETTINGS)
        del built["metadata"]["annotations"][resources.SPEC_HASH_ANNOTATION]
        assert customised(built, m, selector=resources.selector(m)) == built
        assert "envFrom" not in _worker(built)
        assert not {"priorityClassName", "topologySpreadConstraints"} & set(built["spec"])


def test_shared_memory_changes_the_spec_hash() -> None:
    def digest(**changes: Any) -> str:
        value: str = _template(**changes)["metadata"]["annotations"][resources.SPEC_HASH_ANNOTATION]
        return value

    assert digest(pod={"shmSize": "1Gi"}) != digest(pod={"shmSize": "2Gi"})


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        ({"labels": {"app.kubernetes.io/name": "x"}}, "pod.labels sets app.kubernetes.io/name"),
        ({"labels": {"serving.marserve.io/model": "x"}}, "pod.labels sets serving.marserve.io"),
        ({"labels": {"team": 3}}, r"pod.labels.team must be a string"),
        ({"annotations": {"prometheus.io/port": "1"}}, "pod.annotations sets prometheus.io/port"),
        ({"volumes": [{"name": "models", "emptyDir": {}}]}, r"pod.volumes\[0\] is named models"),
        ({"volumes": [{"emptyDir": {}}]}, r"pod.volumes\[0\].name is required"),
        ({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, "not one of pod.volumes"),
        ({"envFrom": [{"prefix": "MARSERVE_"}]}, r"pod.envFrom\[0\].prefix MARSERVE_"),
        ({"shmSize": "lots"}, "pod.shmSize must be a quantity"),
        ({"priorityClassName": ""}, "pod.priorityClassName must be a non-empty string"),
        ({"topologySpreadConstraints": {"maxSkew": 1}}, "must be a list of objects"),
    ],
)
def test_what_would_override_the_operator_is_refused(pod: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        model(pod=pod)


@pytest.mark.parametrize(
    "path", ["/mnt/models", "/mnt/models/x", "/mnt", "/tmp/", "/dev/shm", "/var/run", "/"]
)
def test_mounts_on_inside_or_above_the_operators_paths_are_refused(path: str) -> None:
    volumes = [{"name": "extra", "emptyDir": {}}]
    with pytest.raises(SpecError, match="overlaps a path the operator mounts"):
        model(pod={"volumes": volumes, "volumeMounts": [{"name": "extra", "mountPath": path}]})


@pytest.mark.parametrize("path", ["/mnt/modelsets", "/data", "/var/run/secrets/other", "/tmpfs"])
def test_mounts_beside_the_operators_paths_are_accepted(path: str) -> None:
    volumes = [{"name": "extra", "emptyDir": {}}]
    model(pod={"volumes": volumes, "volumeMounts": [{"name": "extra", "mountPath": path}]})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"archive": {"uri": "pvc://store/models/resnet.mar", "sha256": None}},
        {"pod": {"shmSize": "1Gi"}},
    ],
    ids=["https-auth", "pvc", "shm"],
)
def test_the_reserved_names_cover_everything_the_operator_puts_in_a_pod(
    changes: dict[str, Any],
) -> None:
    """If the operator adds a volume, a mount path or a label, the reserved lists must name it,
    or a user could take it over."""
    m = model(spec={**FULL_SPEC, "pod": {}}, **changes)
    template = resources.pod_template(m, SETTINGS)
    pod = template["spec"]
    for volume in pod["volumes"]:
        name = volume["name"]
        assert name in spec_pod.RESERVED_VOLUMES or name.startswith(spec_pod.RESERVED_VOLUME_PREFIX)
    for container in pod["containers"] + pod["initContainers"]:
        for mount in container["volumeMounts"]:
            assert mount["mountPath"] in spec_pod.RESERVED_MOUNT_PATHS, mount
    for key in template["metadata"]["labels"]:
        assert key in spec_pod.RESERVED_LABELS or key.startswith(spec_pod.OPERATOR_PREFIX)
    for key in template["metadata"]["annotations"]:
        assert key in spec_pod.RESERVED_ANNOTATIONS or key.startswith(spec_pod.OPERATOR_PREFIX)
