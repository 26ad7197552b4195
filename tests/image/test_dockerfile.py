"""The images cannot drift from what the tests ran: their pip installs name pyproject.toml's
extras and the Makefile's torch, their final stages hold no build step and run as a non-root
user, and the real hadolint finds nothing."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import tools

PYPROJECT = tomllib.loads((tools.REPO_ROOT / "pyproject.toml").read_text())
PROJECT_SOURCE = "/src"
# pip options that take a value, so the value is not read as a requirement.
OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "--find-links", "-f", "-c", "-r"}
FINAL_STAGES = {"worker": "marserve", "operator": "marserve-operator"}


def _extra_requirements(extra: str) -> dict[str, Requirement]:
    """What pyproject.toml installs with this extra, by distribution name, self-references
    (`marserve[worker]`) expanded."""
    project = PYPROJECT["project"]
    found = {
        canonicalize_name(Requirement(r).name): Requirement(r) for r in project["dependencies"]
    }
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == project["name"]:
            for included in requirement.extras:
                found |= _extra_requirements(included)
        else:
            found[canonicalize_name(requirement.name)] = requirement
    return found


def _project_requirements(extras: set[str]) -> set[str]:
    """Distribution names pyproject.toml installs with these extras."""
    return {name for extra in extras for name in _extra_requirements(extra)}


def _expand(word: str, build_arg: Callable[[str], str]) -> str:
    """A shell word with `${NAME}` and `${NAME:+word}` replaced as the build args give them."""
    plain = re.sub(r"\$\{(\w+)\}", lambda m: build_arg(m.group(1)), word)
    return re.sub(
        r"\$\{(\w+):\+([^}]*)\}", lambda m: m.group(2) if build_arg(m.group(1)) else "", plain
    )


def _pip_installs(
    dockerfile: Any, target: str, build_args: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(requirement, stage) for every requirement a pip install feeding the target names,
    with `build_args` and otherwise the stage's ARG defaults substituted."""
    found = []
    for stage in dockerfile.feeding(target):

        def build_arg(name: str, stage: Any = stage) -> str:
            return build_args.get(name, dockerfile.arg_default(stage, name))

        for command in stage.arguments("RUN"):
            for part in command.split("&&"):
                words = shlex.split(part)
                if len(words) < 2 or not words[0].endswith("pip") or words[1] != "install":
                    continue
                arguments = iter(words[2:])
                for word in arguments:
                    if word in OPTIONS_WITH_VALUE:
                        next(arguments)
                    elif not word.startswith("-") and (expanded := _expand(word, build_arg)):
                        found.append((expanded, stage.name))
    return found


def _installed(
    dockerfile: Any, target: str, build_args: Mapping[str, str] | None = None
) -> tuple[set[str], dict[str, Requirement]]:
    """Names the target's installs resolve to, and the requirements named outright."""
    names: set[str] = set()
    explicit: dict[str, Requirement] = {}
    for requirement, _ in _pip_installs(dockerfile, target, build_args or {}):
        project = re.fullmatch(re.escape(PROJECT_SOURCE) + r"\[([\w,]+)\]", requirement)
        if project:
            names |= _project_requirements(set(project.group(1).split(",")))
        else:
            parsed = Requirement(requirement)
            explicit[canonicalize_name(parsed.name)] = parsed
            names.add(canonicalize_name(parsed.name))
    return names, explicit


def _makefile_torch_version() -> str:
    makefile = (tools.REPO_ROOT / "Makefile").read_text()
    match = re.search(r"^TORCH_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    assert match, "the Makefile no longer pins TORCH_VERSION"
    return match.group(1)


@pytest.mark.parametrize(
    "target, build_args, extras",
    # The worker image also runs the init container, which reads cloud object stores.
    [
        ("worker", {}, ("vision", "cloud")),
        ("worker", {"TORCHVISION_VERSION": ""}, ("worker", "cloud")),
        ("operator", {}, ("operator",)),
    ],
    ids=["worker", "worker-slim", "operator"],
)
def test_image_installs_exactly_the_pyproject_extra(
    dockerfile: Any, target: str, build_args: dict[str, str], extras: tuple[str, ...]
) -> None:
    names, explicit = _installed(dockerfile, target, build_args)
    assert names == _project_requirements(set(extras))
    declared: dict[str, Requirement] = {}
    for extra in extras:
        declared |= _extra_requirements(extra)
    for name, requirement in explicit.items():
        assert name in declared, (
            f"{target} image installs {name}, which pyproject.toml does not list"
        )
        pinned = next(iter(requirement.specifier)).version
        assert declared[name].specifier.contains(pinned), (requirement, declared[name])


def test_worker_torch_is_the_makefiles_cpu_build(dockerfile: Any) -> None:
    _, explicit = _installed(dockerfile, "worker")
    assert str(explicit["torch"].specifier) == f"=={_makefile_torch_version()}"
    build = dockerfile.stages["worker-build"]
    assert dockerfile.arg_default(build, "TORCH_INDEX") == "https://download.pytorch.org/whl/cpu"
    assert any('--index-url "${TORCH_INDEX}"' in run for run in build.arguments("RUN"))


def test_worker_torchvision_is_resolved_with_torch_from_its_index(dockerfile: Any) -> None:
    """One pip command installs the pair from one index: a torchvision that does not belong with
    the torch fails the build, and a CPU torch never gets a CUDA torchvision."""
    runs = dockerfile.stages["worker-build"].arguments("RUN")
    pair = [
        part
        for run in runs
        for part in run.split("&&")
        if '"torch==${TORCH_VERSION}"' in part and '"torchvision==${TORCHVISION_VERSION}"' in part
    ]
    assert len(pair) == 1, runs
    assert '--index-url "${TORCH_INDEX}"' in pair[0]


def test_operator_image_has_no_torch(dockerfile: Any) -> None:
    names, _ = _installed(dockerfile, "operator")
    assert "torch" not in names and "onnxruntime" not in names


@pytest.mark.parametrize("target", sorted(FINAL_STAGES))
def test_final_stage_runs_as_non_root_without_build_steps(dockerfile: Any, target: str) -> None:
    chain = dockerfile.chain(target)
    users = [user for stage in chain for user in stage.arguments("USER")]
    assert users, f"{target} sets no USER and would run as root"
    user = users[0].split(":")[0]  # the nearest USER wins
    assert user not in ("0", "root")
    assert user == "1000"
    for stage in chain:
        for command in stage.arguments("RUN"):
            assert "pip install" not in command and "apt-get" not in command, (stage.name, command)


@pytest.mark.parametrize("target, command", sorted(FINAL_STAGES.items()))
def test_entrypoints(dockerfile: Any, target: str, command: str) -> None:
    assert dockerfile.stages[target].arguments("ENTRYPOINT") == [f'["{command}"]']


def test_worker_has_the_model_mount_point(dockerfile: Any) -> None:
    runs = " ".join(dockerfile.stages["worker"].arguments("RUN"))
    assert "mkdir -p /mnt/models" in runs and "chown 1000:1000 /mnt/models" in runs


def test_base_image_is_pinned(dockerfile: Any) -> None:
    base = dockerfile.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim-bookworm(@sha256:[a-f0-9]{64})?", base), base


def test_build_context_is_only_the_package_source() -> None:
    lines = (tools.REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything is left out unless named below
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "worker", "operator"}


def test_hadolint_finds_nothing() -> None:
    result = tools.run(
        [
            tools.tool("hadolint"),
            "--config",
            tools.REPO_ROOT / ".hadolint.yaml",
            tools.REPO_ROOT / "Dockerfile",
        ],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
