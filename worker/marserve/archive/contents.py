"""What goes into a MAR: the files, flattened into the archive root, and MANIFEST.json.

Mirrors `torch-model-archiver` 0.12.0 so archives are interchangeable: every input lands in the
root under its base name (a later input with the same name wins), a directory given in
`--extra-files` contributes its contents (not itself), and `__MACOSX`, `__pycache__` and hidden
directories are left out.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from marserve.archive.errors import ArchiveError

#: The torch-model-archiver release whose manifest and layout these archives reproduce.
ARCHIVER_VERSION = "0.12.0"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
RUNTIMES = ("python", "python3", "LSP")
#: Handler names the server provides itself; no file is copied for them.
BUILTIN_HANDLERS = frozenset(
    {
        "base_handler",
        "text_classifier",
        "image_classifier",
        "object_detector",
        "image_segmenter",
        "dali_image_classifier",
        "vllm_handler",
        "trt_llm_handler",
    }
)
_BUILTIN_NATIVE_HANDLERS = frozenset({"BaseHandler", "TorchScriptHandler"})
_SKIPPED_DIRECTORIES = frozenset({"__MACOSX", "__pycache__"})


@dataclass(frozen=True)
class ArchiveRequest:
    """The archiver's inputs, named as its flags."""

    model_name: str
    version: str
    handler: str
    serialized_file: str | None = None
    model_file: str | None = None
    extra_files: Sequence[str] = ()
    requirements_file: str | None = None
    config_file: str | None = None
    runtime: str = "python"
    envelope: str | None = None


def build_manifest(request: ArchiveRequest, *, created: datetime) -> dict[str, Any]:
    """MANIFEST.json's content, fields in torch-model-archiver's order."""
    model: dict[str, str] = {"modelName": request.model_name}
    if request.serialized_file:
        model["serializedFile"] = os.path.basename(request.serialized_file)
    model["handler"] = os.path.basename(request.handler)
    if request.model_file:
        model["modelFile"] = os.path.basename(request.model_file)
    if request.version:
        model["modelVersion"] = request.version
    if request.requirements_file:
        model["requirementsFile"] = os.path.basename(request.requirements_file)
    if request.config_file:
        model["configFile"] = os.path.basename(request.config_file)
    if request.envelope:
        model["envelope"] = request.envelope
    return {
        "createdOn": created.strftime("%d/%m/%Y %H:%M:%S"),
        "runtime": request.runtime,
        "model": model,
        "archiverVersion": ARCHIVER_VERSION,
    }


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2)


def validate_request(request: ArchiveRequest) -> None:
    if not MODEL_NAME_PATTERN.match(request.model_name):
        raise ArchiveError(
            f"model name {request.model_name!r} must match {MODEL_NAME_PATTERN.pattern}"
        )
    if request.runtime not in RUNTIMES:
        raise ArchiveError(f"runtime {request.runtime!r} is not one of {', '.join(RUNTIMES)}")


def collect_files(request: ArchiveRequest) -> dict[str, Path]:
    """Maps each name in the archive root to the file it comes from."""
    files: dict[str, Path] = {}
    for single in (request.model_file, request.serialized_file, _handler_file(request)):
        if single:
            _add_file(files, Path(single))
    for pattern in request.extra_files:
        for match in _expand(pattern):
            if match.is_dir():
                files.update(_directory_contents(match))
            else:
                _add_file(files, match)
    for single in (request.requirements_file, request.config_file):
        if single:
            _add_file(files, Path(single))
    return files


def _handler_file(request: ArchiveRequest) -> str | None:
    """The file a handler value names (`dir/h.py:fn` -> `dir/h.py`); None for built-ins."""
    handler = request.handler
    if request.runtime == "LSP":
        if handler in _BUILTIN_NATIVE_HANDLERS:
            return None
        return handler.split(":")[0] + ".so"
    if handler in BUILTIN_HANDLERS:
        return None
    path = handler.split(":")[0]
    return path if path.endswith(".py") else path + ".py"


def _add_file(files: dict[str, Path], path: Path) -> None:
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist or is not a file")
    files[path.name] = path


def _expand(pattern: str) -> list[Path]:
    pattern = pattern.strip()
    if glob.has_magic(pattern):
        return [Path(match) for match in sorted(glob.glob(pattern))]
    path = Path(pattern)
    if not path.exists():
        raise ArchiveError(f"extra file {pattern} does not exist")
    return [path]


def _directory_contents(directory: Path) -> Iterator[tuple[str, Path]]:
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        subfolders[:] = sorted(
            name for name in subfolders if name not in _SKIPPED_DIRECTORIES and name[0] != "."
        )
        for name in sorted(names):
            path = Path(folder, name)
            yield path.relative_to(directory).as_posix(), path
