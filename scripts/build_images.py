"""Builds marserve's two images, worker and operator, with whichever container engine is here.

On an ordinary machine this is `docker build` (or `podman build`) of the Dockerfile as written.
Machines without a Docker engine, systemd or a reachable image registry (build sandboxes) need
help that belongs here, never in the Dockerfile, and each piece is used only when its need is
detected:

- no working `docker`: podman, installed from Debian apt when missing;
- no systemd: podman runs containers with runc and plain cgroupfs, and with Linux's usual
  ulimits (podman's defaults exceed the hard limits such machines set);
- the base image cannot be pulled: a local Debian bookworm base with Python 3.11, made with
  debootstrap from the mirror apt uses, stands in for `PYTHON_IMAGE`;
- torch's wheel index cannot be reached: the build uses the host's network and the host's pip
  configuration (its CA bundle, local wheel folders and indexes, mounted read-only), and PyPI's
  index for torch, where a local CPU wheel of the pinned version wins over the CUDA one.

Each image is tagged REGISTRY/marserve-TARGET:TAG, the names the chart's `imageRegistry` value
points at, and `--push` sends them there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("operator", "worker")
DEFAULT_PYTHON_IMAGE = "python:3.11-slim-bookworm"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"
LOCAL_BASE = "localhost/marserve-pybase:bookworm"
LOCAL_BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Linux's usual defaults: podman's own (a million open files) exceed what sandboxes allow.
SANDBOX_ULIMITS = ("nofile=1024:1024", "nproc=4096:4096")
PODMAN_PACKAGES = ("podman", "buildah", "runc", "debootstrap")
# pip settings whose values are files or folders the build must see at the same path.
PIP_PATH_SETTINGS = ("cert", "constraint", "find-links", "extra-index-url", "index-url")


def image_name(*, registry: str, target: str, tag: str) -> str:
    """The reference an image is built, pushed and deployed under."""
    return f"{registry.rstrip('/')}/marserve-{target}:{tag}"


@dataclass(frozen=True)
class Engine:
    """A container engine's command line and the flags this machine needs on build and run."""

    command: tuple[str, ...]
    resource_flags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return Path(self.command[0]).name

    def __call__(self, *args: str) -> list[str]:
        """A full command line: the engine, its global flags, then `args`."""
        return [*self.command, *args]

    def run_command(self, *args: str) -> list[str]:
        """`ENGINE run` with this machine's resource flags, then `args`."""
        return self("run", *self.resource_flags, *args)

    def image_size(self, image: str) -> int:
        result = subprocess.run(
            self("image", "inspect", "--format", "{{.Size}}", image),
            capture_output=True,
            text=True,
            check=True,
        )
        return int(result.stdout.strip())


def _succeeds(command: Sequence[str], *, timeout: float = 60) -> bool:
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _install_podman() -> None:
    if all(shutil.which(tool) for tool in ("podman", "runc", "debootstrap")):
        return
    if shutil.which("apt-get") is None:
        raise SystemExit("neither a working docker nor podman here: install one of them")
    print("installing podman from Debian apt", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *PODMAN_PACKAGES], check=True)


def detect_engine(preferred: str = "auto") -> Engine:
    """docker when its daemon answers (or when asked for), podman otherwise."""
    docker = shutil.which("docker")
    if preferred == "docker" or (preferred == "auto" and docker and _succeeds([docker, "info"])):
        return Engine(command=(docker or "docker",))
    _install_podman()
    if Path("/run/systemd/system").is_dir():
        return Engine(command=("podman",))
    return Engine(
        command=("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"),
        resource_flags=tuple(f"--ulimit={limit}" for limit in SANDBOX_ULIMITS),
    )


def reachable(url: str, *, timeout: float = 10) -> bool:
    """Whether an HTTP server answers at `url` at all (an error status still counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _debian_mirror() -> str:
    """The first Debian mirror apt's sources name, so debootstrap fetches where apt can."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                uri = next((word for word in words[1:] if "://" in word), "")
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return DEFAULT_DEBIAN_MIRROR


def base_image(engine: Engine, python_image: str) -> str:
    """`python_image` when the engine has it or can pull it; the local stand-in otherwise."""
    if _succeeds(engine("image", "inspect", python_image)) or _succeeds(
        engine("pull", python_image), timeout=600
    ):
        return python_image
    if _succeeds(engine("image", "inspect", LOCAL_BASE)):
        return LOCAL_BASE
    print(f"{python_image} cannot be pulled: making {LOCAL_BASE} with debootstrap", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={LOCAL_BASE_PACKAGES}",
             "bookworm", str(rootfs), _debian_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(engine("import", "-", LOCAL_BASE), stdin=tar.stdout, check=True)
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrap root file system failed")
    return LOCAL_BASE


def _pip_settings() -> dict[str, list[str]]:
    """The host pip's effective settings (files and environment), values split into words."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    )
    settings: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        settings[key.rsplit(".", 1)[-1]] = shlex.split(value)[0].split() if value else []
    return settings


def _local_path(value: str) -> Path | None:
    path = Path(value.removeprefix("file://"))
    return path if path.is_absolute() and path.exists() else None


@dataclass
class BuildInputs:
    """What every build of this run passes: build arguments and engine flags."""

    build_args: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def host_pip(inputs: BuildInputs) -> None:
    """Lets the build's pip do what the host's pip does: host network, the host's settings as
    /etc/pip.conf, and every file or folder they name mounted read-only at the same path."""
    host_settings = _pip_settings()
    settings = {key: host_settings.get(key, []) for key in PIP_PATH_SETTINGS}
    mounts = {
        # A local index's pages link to files beside it, so its whole parent goes in.
        path.parent if key.endswith("index-url") else path
        for key, values in settings.items()
        for value in values
        if (path := _local_path(value))
    }
    lines = [f"{key} = {' '.join(values)}" for key, values in settings.items() if values]
    text = "\n".join(["[global]", *lines]) + "\n"
    # Named by its content: the build cache keys on mount paths, so a fixed name keeps it warm.
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    config = Path(tempfile.gettempdir()) / f"marserve-build-pip-{digest}.conf"
    config.write_text(text)
    config.chmod(0o644)
    inputs.flags += ["--network", "host", "--volume", f"{config}:/etc/pip.conf:ro"]
    inputs.flags += [f"--volume={path}:{path}:ro" for path in sorted(mounts)]


def choose_torch_source(engine: Engine, inputs: BuildInputs, torch_index: str) -> None:
    """torch's index as given when it answers (docker builds always reach the network as the
    Dockerfile expects); the host's pip settings and PyPI's index otherwise."""
    if reachable(torch_index) or engine.name == "docker":
        inputs.build_args["TORCH_INDEX"] = torch_index
        return
    print(f"{torch_index} cannot be reached: building with the host's pip settings", flush=True)
    inputs.build_args["TORCH_INDEX"] = PYPI_INDEX
    host_pip(inputs)


def build(
    engine: Engine, *, target: str, image: str, inputs: BuildInputs, log: Path | None = None
) -> float:
    """Builds one target and returns the seconds it took."""
    build_args = [f"--build-arg={key}={value}" for key, value in inputs.build_args.items()]
    command = engine(
        "build", *engine.resource_flags, *inputs.flags, *build_args,
        "--target", target, "--tag", image, str(REPO_ROOT),
    )  # fmt: skip
    print("+", shlex.join(command), flush=True)
    started = time.monotonic()
    if log is None:
        subprocess.run(command, check=True)
    else:
        with log.open("ab") as output:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise SystemExit(f"building {target} failed; its log: {log}")
    return time.monotonic() - started


def build_images(
    engine: Engine,
    *,
    registry: str,
    tag: str,
    targets: Sequence[str] = TARGETS,
    python_image: str = DEFAULT_PYTHON_IMAGE,
    torch_index: str = DEFAULT_TORCH_INDEX,
    log: Path | None = None,
) -> dict[str, dict[str, float | str]]:
    """Builds the targets; for each, its image name, build seconds and size in bytes."""
    inputs = BuildInputs(build_args={"PYTHON_IMAGE": base_image(engine, python_image)})
    choose_torch_source(engine, inputs, torch_index)
    report: dict[str, dict[str, float | str]] = {}
    for target in targets:
        image = image_name(registry=registry, target=target, tag=tag)
        seconds = build(engine, target=target, image=image, inputs=inputs, log=log)
        size = engine.image_size(image)
        report[target] = {"image": image, "build_seconds": round(seconds, 1), "bytes": size}
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="localhost", help="registry/path of the images")
    parser.add_argument("--tag", required=True, help="image tag (the chart's appVersion)")
    parser.add_argument("--target", action="append", choices=TARGETS, help="default: both")
    parser.add_argument("--engine", choices=("auto", "docker", "podman"), default="auto")
    parser.add_argument("--python-image", default=DEFAULT_PYTHON_IMAGE)
    parser.add_argument("--torch-index", default=DEFAULT_TORCH_INDEX)
    parser.add_argument("--push", action="store_true", help="push the images after building")
    args = parser.parse_args(argv)
    engine = detect_engine(args.engine)
    report = build_images(
        engine,
        registry=args.registry,
        tag=args.tag,
        targets=args.target or TARGETS,
        python_image=args.python_image,
        torch_index=args.torch_index,
    )
    for built in report.values():
        if args.push:
            subprocess.run(engine("push", str(built["image"])), check=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
