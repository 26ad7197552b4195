"""The chart points at images the user built: one value, imageRegistry, names the registry of
both, under the names `make images` tags, and an install that forgets it stops at render time
with what to set instead of pods stuck in ImagePullBackOff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support import tools

APP_VERSION = yaml.safe_load((tools.CHART_DIR / "Chart.yaml").read_text())["appVersion"]


def _images(objects: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    return {"operator": container["image"], "worker": environment["MARSERVE_WORKER_IMAGE"]}


@pytest.mark.parametrize("values", [{}, {"imageRegistry": ""}], ids=["unset", "empty"])
def test_rendering_without_the_registry_fails_saying_what_to_set(
    values: dict[str, Any], chart_workdir: Path
) -> None:
    command = tools.helm_template_command(values, workdir=chart_workdir, images_set=False)
    result = tools.run(command, check=False)
    assert result.returncode != 0
    assert "imageRegistry is required" in result.stderr
    assert "--set imageRegistry=" in result.stderr


@pytest.mark.parametrize(
    "registry", ["registry.example.com:5000/team/ml", "localhost/", "ghcr.io/acme"]
)
def test_one_value_names_both_images_as_make_images_tags_them(
    registry: str, chart_workdir: Path
) -> None:
    objects = tools.helm_template({"imageRegistry": registry}, workdir=chart_workdir)
    build_images = tools.build_images_script()
    assert _images(objects) == {
        target: build_images.image_name(registry=registry, target=target, tag=APP_VERSION)
        for target in ("operator", "worker")
    }


def test_tags_and_digests_still_apply_per_image(chart_workdir: Path) -> None:
    digest = "sha256:" + "a" * 64
    values = {"image": {"tag": "0.2.0"}, "workerImage": {"digest": digest}}
    images = _images(tools.helm_template(values, workdir=chart_workdir))
    assert images == {
        "operator": "registry.example.com/ml/marserve-operator:0.2.0",
        "worker": f"registry.example.com/ml/marserve-worker@{digest}",
    }


@pytest.mark.parametrize("doc", ["README.md", "docs/install.md"])
def test_install_docs_build_the_images_before_installing_with_the_registry(doc: str) -> None:
    text = (tools.REPO_ROOT / doc).read_text()
    first_install = text.index("helm install marserve")
    assert text.index("make images") < first_install
    assert "--set imageRegistry=" in text[first_install : text.index("```", first_install)]
