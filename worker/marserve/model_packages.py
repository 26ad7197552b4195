"""A model's own Python packages: installing the archive's `requirementsFile`, and finding them.

TorchServe pip-installs an archive's requirements file when `install_py_dep_per_model=true`.
marserve installs it with `pip install --target` into a folder of its own, never into the
server's environment, so two models may pin different versions of a package. Installs are kept
in a cache keyed by the interpreter and the requirements file's sha256: a second start, or a
second model with the same requirements, reuses them without running pip. The model directory
links to its entry (`MODEL_PACKAGES_DIR`), and a worker of that model, only that model, puts
the link on `sys.path`.

Standard library only: `marserve install-deps` runs in the init container without torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from marserve.contract import MODEL_PACKAGES_DIR, PACKAGE_INDEX_ENV

log = logging.getLogger("marserve")

DEFAULT_TIMEOUT_S: Final = 600.0
_SUMMARY_CHARS: Final = 1500
_SUMMARY_LINES: Final = 5


class DependencyInstallError(Exception):
    """A requirements file that could not be installed; the message carries pip's own words."""


@dataclass(frozen=True)
class PackageIndex:
    """Where pip looks for packages; None leaves pip to its own configuration (`PIP_*`
    variables, pip.conf). Credentials go only into the URLs named here, never to PyPI."""

    index_url: str | None = None
    extra_index_url: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PackageIndex:
        def value(name: str) -> str | None:
            return environ.get(name) or None

        return cls(
            index_url=value(PACKAGE_INDEX_ENV.package_index_url),
            extra_index_url=value(PACKAGE_INDEX_ENV.package_extra_index_url),
            username=value(PACKAGE_INDEX_ENV.package_index_username),
            password=value(PACKAGE_INDEX_ENV.package_index_password),
        )

    def pip_environ(self) -> dict[str, str]:
        """pip's own variables for these indexes: the environment keeps credentials out of the
        command line, and pip masks them in what it prints."""
        environ: dict[str, str] = {}
        if self.index_url:
            environ["PIP_INDEX_URL"] = self._authenticated(self.index_url)
        if self.extra_index_url:
            environ["PIP_EXTRA_INDEX_URL"] = " ".join(
                self._authenticated(url) for url in self.extra_index_url.split()
            )
        return environ

    def _authenticated(self, url: str) -> str:
        parts = urlsplit(url)
        if not self.username or "@" in parts.netloc:
            return url
        user = quote(self.username, safe="")
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return urlunsplit(parts._replace(netloc=f"{user}{secret}@{parts.netloc}"))


def requirements_file(model_dir: Path, manifest: Mapping[str, Any]) -> Path | None:
    """The requirements file the manifest names, or None when it names none."""
    name = manifest.get("model", {}).get("requirementsFile")
    return model_dir / str(name) if name else None


def default_cache() -> Path:
    """The user's cache folder (`$XDG_CACHE_HOME`, else ~/.cache), as pip's own cache uses."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "marserve" / "model-packages"


def install_requirements(
    model_dir: Path,
    *,
    requirements: Path,
    cache: Path,
    index: PackageIndex = PackageIndex(),
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Makes the requirements' packages available to the model's workers, running pip only
    when the cache has no entry for this file yet; returns the entry. The error's message is
    the one the server and the init container both report."""
    try:
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
        entry = cache.resolve() / sys.implementation.cache_tag / sysconfig.get_platform() / digest
        if entry.is_dir():
            log.info("reusing the packages of %s in %s", requirements, entry)
        else:
            _pip_install(requirements, entry=entry, cwd=model_dir, index=index, timeout_s=timeout_s)
        _link(model_dir / MODEL_PACKAGES_DIR, entry)
    except (OSError, DependencyInstallError) as error:
        raise DependencyInstallError(
            f"requirements file {requirements.name} could not be installed: {error}"
        ) from error
    return entry


def installed_packages(model_dir: Path) -> Path | None:
    """The model's packages folder, when one was installed for it."""
    packages = model_dir / MODEL_PACKAGES_DIR
    return packages if packages.is_dir() else None


def add_to_sys_path(model_dir: Path) -> Path | None:
    """Puts the model's packages ahead of the server's site-packages, as TorchServe's
    PYTHONPATH does, so a model's pinned version wins over the server's for any module the
    fork server has not already imported. The unresolved path ends in `-packages`, so the
    model directory itself, added later, still goes in front of it."""
    packages = installed_packages(model_dir)
    if packages is None or str(packages) in sys.path:
        return packages
    site = (i for i, entry in enumerate(sys.path) if entry.endswith("-packages"))
    sys.path.insert(next(site, len(sys.path)), str(packages))
    return packages


def pip_summary(output: str) -> str:
    """pip's error lines (else its last lines) on one line, short enough for a termination
    message and an HTTP body."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    summary = " ".join(errors or lines[-_SUMMARY_LINES:]) or "pip printed nothing"
    return summary if len(summary) <= _SUMMARY_CHARS else "..." + summary[-_SUMMARY_CHARS:]


def _pip_install(
    requirements: Path, *, entry: Path, cwd: Path, index: PackageIndex, timeout_s: float
) -> None:
    """Installs into a fresh folder beside `entry`, renamed into place only once pip has
    succeeded, so a crash or a concurrent install never leaves a half-filled entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    partial.chmod(0o755)  # mkdtemp makes it private; the cache is shared like pip's
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(partial),
        "--requirement", str(requirements.resolve()),
        "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
    ]  # fmt: skip
    log.info("installing %s into %s", requirements, entry)
    try:
        _run(command, cwd=cwd, environ=index.pip_environ(), timeout_s=timeout_s)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        partial.rename(entry)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not entry.is_dir():  # else a concurrent install of the same file finished first
            raise


def _run(command: list[str], *, cwd: Path, environ: Mapping[str, str], timeout_s: float) -> None:
    """Runs pip in its own process group, so a timeout also stops the builds it started."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **environ},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise DependencyInstallError(
            f"pip did not finish within {timeout_s:g} s: {pip_summary(output)}"
        ) from None
    if process.returncode != 0:
        raise DependencyInstallError(f"pip could not install it: {pip_summary(output)}")


def _link(link: Path, entry: Path) -> None:
    """Points the model directory at the cache entry, replacing a link to an older one."""
    if link.is_symlink() and link.resolve() == entry.resolve():
        return
    fresh = link.with_name(f"{link.name}.{os.getpid()}")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(entry, target_is_directory=True)
    fresh.replace(link)
