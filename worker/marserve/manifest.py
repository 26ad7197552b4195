"""Reading and checking `MAR-INF/MANIFEST.json`, the one file every model archive must carry.

The model loader, `marserve extract` and the server all read the manifest through here, so a
broken archive gives the same message wherever it is first noticed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MANIFEST_PATH = "MAR-INF/MANIFEST.json"


class ManifestError(ValueError):
    """The manifest is missing or does not describe a model marserve can load."""


def parse_manifest(raw: bytes | str, *, source: str = MANIFEST_PATH) -> dict[str, Any]:
    """Parses and validates manifest text; `source` names it in error messages."""
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{source} is not valid JSON: {error}") from error
    return validate_manifest(manifest, source=source)


def read_manifest(model_dir: Path | str) -> dict[str, Any]:
    """Reads the manifest of an extracted model directory."""
    path = Path(model_dir) / MANIFEST_PATH
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise ManifestError(f"{MANIFEST_PATH} is missing from {model_dir}") from error
    return parse_manifest(raw, source=str(path))


def validate_manifest(manifest: object, *, source: str = MANIFEST_PATH) -> dict[str, Any]:
    """Checks the fields the runtime relies on: a `model` object with a name and a handler."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{source} must hold a JSON object, not {type(manifest).__name__}")
    model = manifest.get("model")
    if not isinstance(model, Mapping):
        raise ManifestError(f"{source} has no 'model' object")
    for key in ("modelName", "handler"):
        value = model.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{source} has no model.{key}")
    for key in ("serializedFile", "modelFile", "configFile", "modelVersion", "envelope"):
        value = model.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{source}: model.{key} must be a string")
    for key in ("serializedFile", "modelFile", "configFile", "handler"):
        value = model.get(key)
        path = value.split(":", 1)[0] if key == "handler" and isinstance(value, str) else value
        if isinstance(path, str) and _escapes(path):
            raise ManifestError(f"{source}: model.{key} {value!r} points outside the archive")
    return manifest


def require_referenced_files(
    manifest: Mapping[str, Any], model_dir: Path, *, source: str = MANIFEST_PATH
) -> None:
    """Checks that every file the manifest names is in the model directory.

    A handler is a file only when it names a `.py` file; other values are built-in handler
    names or importable modules.
    """
    model = manifest.get("model", {})
    for key in ("serializedFile", "modelFile", "configFile", "requirementsFile", "handler"):
        value = model.get(key)
        if not isinstance(value, str):
            continue
        path = value.split(":", 1)[0] if key == "handler" else value
        if key == "handler" and not path.endswith(".py"):
            continue
        if not (model_dir / path).is_file():
            raise ManifestError(
                f"{source} names model.{key} {value!r}, which is not in the archive"
            )


def _escapes(relative: str) -> bool:
    path = Path(relative)
    return path.is_absolute() or ".." in path.parts
