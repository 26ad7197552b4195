"""The Dockerfile read as data: its stages, what each runs, and which stages feed an image.

The static checks read the image from its instructions: which stages a target is built from, what
their pip installs name, and who runs it. The `image` tests (`make image-test`) build and run the
images themselves with the engine `make images` finds.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from support import tools

DOCKERFILE = tools.REPO_ROOT / "Dockerfile"


@dataclass
class Stage:
    """One FROM ... AS name section and its instructions, continuation lines joined."""

    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]

    def copied_from(self) -> list[str]:
        return [
            m.group(1)
            for rest in self.arguments("COPY")
            for m in [re.match(r"--from=(\S+)", rest)]
            if m
        ]


@dataclass
class Dockerfile:
    stages: dict[str, Stage]
    global_args: dict[str, str]

    def chain(self, target: str) -> list[Stage]:
        """The target and the stages it is based on (FROM), nearest first."""
        stages = []
        name: str | None = target
        while name in self.stages:
            stages.append(self.stages[name])
            name = self.stages[name].parent
        return stages

    def feeding(self, target: str) -> list[Stage]:
        """Every stage whose files can reach the target: its FROM chain and COPY --from sources."""
        seen: dict[str, Stage] = {}
        pending = [target]
        while pending:
            for stage in self.chain(pending.pop()):
                if stage.name not in seen:
                    seen[stage.name] = stage
                    pending.extend(stage.copied_from())
        return list(seen.values())

    def arg_default(self, stage: Stage, name: str) -> str:
        for rest in stage.arguments("ARG"):
            key, _, value = rest.partition("=")
            if key == name:
                return value
        return self.global_args[name]


def parse(text: str) -> Dockerfile:
    joined = re.sub(r"\\\n", " ", text)
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    current: Stage | None = None
    for raw_line in joined.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), " ".join(rest.split())
        if word == "FROM":
            parts = shlex.split(rest)
            current = stages.setdefault(parts[2], Stage(name=parts[2], parent=parts[0]))
        elif current is None and word == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        elif current is not None:
            current.instructions.append((word, rest))
    return Dockerfile(stages=stages, global_args=global_args)


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())


# The images themselves, built by `make images`'s script and run with its engine (`-m image`).

APP_VERSION = yaml.safe_load((tools.CHART_DIR / "Chart.yaml").read_text())["appVersion"]
BUILD_REPORT: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def engine() -> Any:
    return tools.build_images_script().detect_engine()


@pytest.fixture(scope="session")
def images(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Both images, as `make images` builds them (the engine's cache makes a rebuild quick)."""
    log = tmp_path_factory.mktemp("image-build") / "build.log"
    BUILD_REPORT.update(
        tools.build_images_script().build_images(
            engine,
            registry=os.environ.get("IMAGE_REGISTRY", "localhost"),
            tag=os.environ.get("IMAGE_TAG", APP_VERSION),
            log=log,
        )
    )
    return {target: str(built["image"]) for target, built in BUILD_REPORT.items()}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for target, built in BUILD_REPORT.items():
        terminalreporter.write_line(
            f"image {built['image']}: {built['bytes'] / 1e6:.0f} MB, "
            f"built in {built['build_seconds']} s ({target} target)"
        )
