"""Renders the chart once per session with the value sets the chart tests look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support import tools

# Every optional block on, so every template renders at least once.
ALL_ON_VALUES: dict[str, Any] = {
    "image": {"digest": "sha256:" + "0" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "operator": {
        "logLevel": "debug",
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "ml"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
    },
    "serviceAccount": {"annotations": {"iam.example.com/role": "marserve"}},
    "monitoring": {
        "serviceMonitor": {
            "labels": {"release": "kube-prometheus-stack"},
            "workers": {"enabled": True},
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "marserve"}},
        "prometheusAdapter": {"enabled": True},
    },
}

NAMESPACED_VALUES: dict[str, Any] = {
    **ALL_ON_VALUES,
    "watchNamespaces": ["ml", "ml-staging"],
}


@pytest.fixture(scope="session")
def all_on_values() -> dict[str, Any]:
    return ALL_ON_VALUES


@pytest.fixture(scope="session")
def chart_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart")


@pytest.fixture(scope="session")
def default_objects(chart_workdir: Path) -> list[dict[str, Any]]:
    return tools.helm_template({}, workdir=chart_workdir)


@pytest.fixture(scope="session")
def all_on_objects(chart_workdir: Path) -> list[dict[str, Any]]:
    return tools.helm_template(ALL_ON_VALUES, workdir=chart_workdir)


@pytest.fixture(scope="session")
def namespaced_objects(chart_workdir: Path) -> list[dict[str, Any]]:
    return tools.helm_template(NAMESPACED_VALUES, workdir=chart_workdir)
