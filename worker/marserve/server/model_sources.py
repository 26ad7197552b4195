"""Turning `--models` entries into extracted model directories with their settings.

A pod's init container has already unpacked the archive (`NAME=DIR`); a laptop hands over `.mar`
files, which are unpacked here into a temporary folder that lives as long as the server.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from marserve import model_packages
from marserve.contract import WORKER_ENV
from marserve.manifest import ManifestError, read_manifest
from marserve.server.config import ConfigError, ModelSettings, ServerConfig
from marserve.server.model_signature import ModelSignature, read_signature

log = logging.getLogger("marserve")

ARCHIVE_SUFFIXES = (".mar", ".tar.gz", ".tgz", ".zip")


@dataclass(frozen=True)
class ModelSource:
    """One model ready to load: where it lies on disk and how it should be served."""

    name: str
    version: str
    model_dir: Path
    manifest: Mapping[str, Any]
    yaml_config: Mapping[str, Any]
    settings: ModelSettings
    failure: str | None = None  # why it cannot be served: the server reports it FAILED
    signature: ModelSignature = field(default_factory=ModelSignature)

    @property
    def envelope(self) -> str | None:
        envelope = self.manifest["model"].get("envelope")
        return str(envelope) if envelope else None


def resolve_models(config: ServerConfig, *, scratch: Path) -> list[ModelSource]:
    """Resolves every `--models` entry; archives are unpacked under `scratch`."""
    entries = _expand(config.models, config.model_store)
    if not entries:
        raise ConfigError("no models to serve: pass --models NAME=PATH (or MARSERVE_MODELS)")
    sources = [_load_or_fail(name, path, config=config, scratch=scratch) for name, path in entries]
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"model {source.name!r} is listed twice")
        seen.add(source.name)
    return sources


def _expand(models: Sequence[str], store: Path | None) -> list[tuple[str | None, Path]]:
    entries: list[tuple[str | None, Path]] = []
    for spec in models:
        if spec == "all":
            if store is None:
                raise ConfigError("--models all needs --model-store")
            entries += [(None, path) for path in sorted(store.iterdir()) if _is_model(path)]
            continue
        name, _, location = spec.rpartition("=")
        path = Path(location)
        if not path.is_absolute() and store is not None and not path.exists():
            path = store / path
        if not path.exists():
            raise ConfigError(f"model {spec!r}: {path} does not exist")
        entries.append((name or None, path))
    return entries


def _is_model(path: Path) -> bool:
    if path.is_dir():
        return (path / "MAR-INF" / "MANIFEST.json").is_file()
    return path.name.endswith(ARCHIVE_SUFFIXES)


def _load_or_fail(
    name: str | None, path: Path, *, config: ServerConfig, scratch: Path
) -> ModelSource:
    """A broken archive fails its own model, not the server: the other models are still served
    and the failure shows in the management API and readiness."""
    try:
        return _load(name, path, config=config, scratch=scratch)
    except ConfigError as error:
        return ModelSource(
            name=name or _archive_stem(path),
            version="1.0",
            model_dir=path,
            manifest={"model": {}},
            yaml_config={},
            settings=config.model_settings({}),
            failure=str(error),
        )


def _archive_stem(path: Path) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _load(name: str | None, path: Path, *, config: ServerConfig, scratch: Path) -> ModelSource:
    model_dir = path if path.is_dir() else _extract(path, scratch)
    try:
        manifest = read_manifest(model_dir)
    except ManifestError as error:
        raise ConfigError(str(error)) from error
    model = manifest["model"]
    yaml_config = _read_yaml(model_dir, model.get("configFile"))
    model_name = name or str(model["modelName"])
    return ModelSource(
        name=model_name,
        version=str(model.get("modelVersion") or "1.0"),
        model_dir=model_dir,
        manifest=manifest,
        yaml_config=yaml_config,
        settings=config.model_settings(yaml_config),
        signature=read_signature(yaml_config),
        failure=_install_packages(model_name, model_dir, manifest=manifest, config=config),
    )


def _install_packages(
    name: str, model_dir: Path, *, manifest: Mapping[str, Any], config: ServerConfig
) -> str | None:
    """Installs the archive's requirements before any worker starts (this runs off the event
    loop); a failed install fails this model only, with pip's words as the reason."""
    requirements = model_packages.requirements_file(model_dir, manifest)
    if requirements is None:
        return None
    if not config.install_model_deps:
        if model_packages.installed_packages(model_dir) is None:
            log.warning(
                "model %s: requirements file %s is ignored; pass --install-model-deps (or set "
                "%s=true, or install_py_dep_per_model=true in config.properties) to install it",
                name, requirements.name, WORKER_ENV.install_model_deps,
            )  # fmt: skip
        return None
    try:
        model_packages.install_requirements(
            model_dir,
            requirements=requirements,
            cache=config.model_packages_cache or model_packages.default_cache(),
            index=config.package_index,
        )
    except model_packages.DependencyInstallError as error:
        return str(error)
    return None


def _extract(archive: Path, scratch: Path) -> Path:
    from marserve.archive import ArchiveError, extract_archive  # only where a .mar is served

    destination = Path(tempfile.mkdtemp(prefix=f"{archive.stem}-", dir=scratch))
    try:
        return extract_archive(archive, destination)
    except ArchiveError as error:
        raise ConfigError(f"{archive}: {error}") from error


def _read_yaml(model_dir: Path, config_file: str | None) -> dict[str, Any]:
    """Reads the model's YAML config, which batching and scaling need before any worker starts."""
    if not config_file:
        return {}
    path = model_dir / config_file
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"model config {path} cannot be read: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"model config {path} must hold a mapping")
    return loaded
