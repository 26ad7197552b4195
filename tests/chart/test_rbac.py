"""The operator gets exactly the access it uses: everything it needs, nothing more, in both the
cluster-wide and the per-namespace layouts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from marserve_operator import cluster, reconcile
from support import tools

Permission = tuple[str, str, str]  # (API group, resource, verb)

READ = ("get", "list", "watch")
BY_NAME = ("get", "create", "patch")
BY_NAME_AND_REMOVED = (*BY_NAME, "delete")


def _grant(group: str, resource: str, verbs: Iterable[str]) -> set[Permission]:
    return {(group, resource, verb) for verb in verbs}


# What the operator does in a namespace it serves. Every owned kind is deleted when a model
# stops needing it: a canary's Deployment and Service once it is promoted or rolled back,
# autoscalers, disruption budgets, ServiceMonitors and routes when the spec drops them. Only
# models, Deployments and Pods are watched; the other owned objects are read by name.
# tests/reliability records the calls the running operator makes and checks this list against
# them.
NAMESPACED_NEEDS: set[Permission] = (
    _grant("serving.marserve.io", "inferencemodels", (*READ, "patch"))
    | _grant("serving.marserve.io", "inferencemodels/status", ("patch",))
    | _grant("apps", "deployments", (*READ, "create", "patch", "delete"))
    | _grant("", "services", BY_NAME_AND_REMOVED)
    | _grant("autoscaling", "horizontalpodautoscalers", BY_NAME_AND_REMOVED)
    | _grant("policy", "poddisruptionbudgets", BY_NAME_AND_REMOVED)
    | _grant("keda.sh", "scaledobjects", BY_NAME_AND_REMOVED)
    | _grant("http.keda.sh", "httpscaledobjects", BY_NAME_AND_REMOVED)
    | _grant("gateway.networking.k8s.io", "httproutes", BY_NAME_AND_REMOVED)
    | _grant("monitoring.coreos.com", "servicemonitors", BY_NAME_AND_REMOVED)
    | _grant("", "pods", ("list", "watch"))
    | _grant("", "events", ("create",))
)
# Cluster-scoped reads kopf needs to follow namespaces and resource definitions.
CLUSTER_NEEDS: set[Permission] = _grant("", "namespaces", ("list", "watch")) | _grant(
    "apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")
)


def _permissions(role: dict[str, Any]) -> set[Permission]:
    granted: set[Permission] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    granted.add((group, resource, verb))
    return granted


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def _binds_operator(binding: dict[str, Any], role: dict[str, Any]) -> bool:
    subjects = binding["subjects"]
    return (
        binding["roleRef"]["kind"] == role["kind"]
        and binding["roleRef"]["name"] == role["metadata"]["name"]
        and subjects
        == [{"kind": "ServiceAccount", "name": "marserve", "namespace": "marserve-system"}]
    )


def test_every_kind_the_operator_owns_is_covered() -> None:
    for api_version, kind in reconcile.OWNED_KINDS:
        group = api_version.rpartition("/")[0]
        for verb in ("get", "create", "patch"):
            assert (group, cluster.plural(kind), verb) in NAMESPACED_NEEDS, (
                api_version,
                kind,
                verb,
            )


def test_cluster_wide_install_grants_exactly_what_the_operator_uses(
    default_objects: list[dict[str, Any]],
) -> None:
    (cluster_role,) = _of_kind(default_objects, "ClusterRole")
    assert _permissions(cluster_role) == NAMESPACED_NEEDS | CLUSTER_NEEDS
    (binding,) = _of_kind(default_objects, "ClusterRoleBinding")
    assert _binds_operator(binding, cluster_role)
    assert not _of_kind(default_objects, "Role")


def test_namespaced_install_confines_model_access_to_the_watched_namespaces(
    namespaced_objects: list[dict[str, Any]],
) -> None:
    (cluster_role,) = _of_kind(namespaced_objects, "ClusterRole")
    assert _permissions(cluster_role) == CLUSTER_NEEDS
    roles = {role["metadata"]["namespace"]: role for role in _of_kind(namespaced_objects, "Role")}
    assert sorted(roles) == ["ml", "ml-staging"]
    bindings = _of_kind(namespaced_objects, "RoleBinding")
    for namespace, role in roles.items():
        assert _permissions(role) == NAMESPACED_NEEDS
        assert any(
            binding["metadata"]["namespace"] == namespace and _binds_operator(binding, role)
            for binding in bindings
        )


def test_no_rbac_objects_when_disabled(chart_workdir: Path) -> None:
    objects = tools.helm_template({"rbac": {"create": False}}, workdir=chart_workdir)
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
