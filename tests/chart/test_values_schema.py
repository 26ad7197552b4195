"""values.schema.json turns mistakes in values into a failed install, before anything reaches
the cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support import tools

BAD_VALUES: dict[str, dict[str, Any]] = {
    "misspelt top-level key": {"watchNamespace": ["ml"]},
    "unknown operator key": {"operator": {"replicas": 2}},
    "log level outside the enum": {"operator": {"logLevel": "loud"}},
    "port out of range": {"operator": {"healthPort": 70000}},
    "namespace that is not a DNS label": {"watchNamespaces": ["ML_Team"]},
    "duplicate namespaces": {"watchNamespaces": ["ml", "ml"]},
    "digest that is not sha256": {"image": {"digest": "latest"}},
    "pull policy outside the enum": {"image": {"pullPolicy": "Sometimes"}},
    "empty image repository": {"image": {"repository": ""}},
    "registry with a scheme": {"imageRegistry": "https://registry.example.com"},
    "registry in capitals": {"imageRegistry": "Registry.Example.com"},
    "prometheus url without scheme": {"prometheusUrl": "prometheus:9090"},
    "not a quantity": {"operator": {"resources": {"limits": {"memory": "lots"}}}},
    "boolean as a string": {"monitoring": {"prometheusRule": {"enabled": "yes"}}},
    "alert duration without unit": {"monitoring": {"prometheusRule": {"queueWaitFor": "5"}}},
    "negative restart threshold": {"monitoring": {"prometheusRule": {"workerRestarts": -1}}},
    "label value that is not a string": {"operator": {"podLabels": {"tier": 1}}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_values_fail_the_render(values: dict[str, Any], chart_workdir: Path) -> None:
    command = tools.helm_template_command(values, workdir=chart_workdir)
    result = tools.run(command, check=False)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr


def test_a_good_override_renders(chart_workdir: Path) -> None:
    values = {"watchNamespaces": ["ml"], "image": {"tag": "0.1.0-rc.1"}}
    result = tools.run(tools.helm_template_command(values, workdir=chart_workdir))
    assert "registry.example.com/ml/marserve-operator:0.1.0-rc.1" in result.stdout
