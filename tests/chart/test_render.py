"""The chart lints clean with the real Helm, and every object it renders is valid Kubernetes for
the oldest version we support, with default values and with every option on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from marserve.contract import OPERATOR_ENV
from marserve_operator import main as operator_main
from marserve_operator.settings import OperatorSettings
from support import tools

# Other projects' custom resources: kubernetes-validate has no schema for them. Their content is
# checked where it is used (promtool for the rules, the autoscaling test for queries).
FOREIGN_KINDS = {"ServiceMonitor", "PrometheusRule"}
CRD_SOURCE = tools.REPO_ROOT / "crds" / "inferencemodel.yaml"
CRD_CHART_COPY = tools.CHART_DIR / "crds" / "inferencemodel.yaml"


@pytest.mark.parametrize("values_name", ["default", "all_on"])
def test_helm_lint_strict_passes(
    values_name: str, all_on_values: dict[str, Any], chart_workdir: Path
) -> None:
    values = all_on_values if values_name == "all_on" else {}
    values_file = tools.write_values(values, workdir=chart_workdir)
    lint = [tools.tool("helm"), "lint", "--strict", tools.CHART_DIR, "-f", tools.CI_VALUES]
    result = tools.run([*lint, "-f", values_file])
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("render", ["default_objects", "all_on_objects", "namespaced_objects"])
def test_every_rendered_object_is_valid_kubernetes(
    render: str, request: pytest.FixtureRequest
) -> None:
    objects: list[dict[str, Any]] = request.getfixturevalue(render)
    checked = 0
    for obj in objects:
        if obj["kind"] in FOREIGN_KINDS:
            continue
        kubernetes_validate.validate(obj, tools.KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 4  # ServiceAccount, Deployment and RBAC at least


def test_optional_blocks_render_only_when_enabled(
    default_objects: list[dict[str, Any]], all_on_objects: list[dict[str, Any]]
) -> None:
    default_kinds = sorted(obj["kind"] for obj in default_objects)
    assert default_kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
    ]
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in all_on_objects}
    assert {
        ("ServiceMonitor", "marserve-workers"),
        ("PrometheusRule", "marserve"),
        ("ConfigMap", "marserve-dashboard"),
        ("ConfigMap", "marserve-prometheus-adapter-rules"),
    } <= names


def test_chart_ships_the_same_crd_bytes_as_crds_dir() -> None:
    assert CRD_SOURCE.read_bytes() == CRD_CHART_COPY.read_bytes(), (
        f"refresh the chart's copy: cp {CRD_SOURCE} {CRD_CHART_COPY}"
    )


def test_operator_runs_as_kopf_expects_and_locked_down(
    all_on_objects: list[dict[str, Any]],
) -> None:
    (deployment,) = [obj for obj in all_on_objects if obj["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["command"] == ["marserve-operator"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["image"].endswith("@sha256:" + "0" * 64)


def _operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("render", ["default_objects", "all_on_objects", "namespaced_objects"])
def test_the_operator_accepts_its_arguments_and_environment(
    render: str, request: pytest.FixtureRequest
) -> None:
    container = _operator_container(request.getfixturevalue(render))
    arguments = operator_main.parse_arguments(container["args"])  # exits on an unknown flag
    assert arguments.peering is None  # standalone: no peering resources, so no RBAC for them
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    settings = OperatorSettings.from_env(environment)
    assert settings.worker_image == "registry.example.com/ml/marserve-worker:0.1.0"
    assert settings.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    assert set(environment) - {"EXTRA"} <= set(dataclasses.astuple(OPERATOR_ENV))


def test_watch_namespaces_reach_the_operator(
    default_objects: list[dict[str, Any]], namespaced_objects: list[dict[str, Any]]
) -> None:
    for objects, expected in ((default_objects, ()), (namespaced_objects, ("ml", "ml-staging"))):
        container = _operator_container(objects)
        environment = {variable["name"]: variable["value"] for variable in container["env"]}
        assert OperatorSettings.from_env(environment).watch_namespaces == expected
