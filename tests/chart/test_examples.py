"""The example InferenceModels the docs tell users to apply are accepted by the CRD (schema and
CEL rules) and by the operator's own spec parsing."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from marserve_operator.spec import parse_spec
from support import crd_schema, tools

EXAMPLES = sorted((tools.REPO_ROOT / "examples" / "k8s").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crd_schema.load_crd()


def test_there_are_examples_for_each_engine_and_accelerator() -> None:
    specs = [yaml.safe_load(path.read_text())["spec"] for path in EXAMPLES]
    engines = {spec["autoscaling"]["engine"] for spec in specs if "autoscaling" in spec}
    accelerators = {spec.get("accelerator", {}).get("type", "none") for spec in specs}
    assert engines == {"hpa", "keda"}
    assert accelerators == {"none", "nvidia", "intel-xpu"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_a_valid_inference_model(path: Path, crd: dict[str, Any]) -> None:
    (model,) = list(yaml.safe_load_all(path.read_text()))
    assert model["apiVersion"] == "serving.marserve.io/v1alpha1"
    assert model["kind"] == "InferenceModel"
    assert crd_schema.errors(crd, model) == []
    assert crd_schema.cel_violations(crd, model) == []
    parse_spec(
        name=model["metadata"]["name"],
        namespace=model["metadata"]["namespace"],
        spec=model["spec"],
    )


def test_the_manifest_in_the_install_notes_is_valid(crd: dict[str, Any]) -> None:
    install = [tools.tool("helm"), "install", "marserve", tools.CHART_DIR, "--dry-run=client"]
    install += ["--values", tools.CI_VALUES]
    notes = tools.run([*install, "--set", "watchNamespaces={ml}"]).stdout
    block = notes.split("Save this as mnist.yaml:", 1)[1].split("then: kubectl apply", 1)[0]
    model = yaml.safe_load(textwrap.dedent(block))
    assert model["metadata"]["namespace"] == "ml"
    assert crd_schema.errors(crd, model) == []
    assert crd_schema.cel_violations(crd, model) == []
