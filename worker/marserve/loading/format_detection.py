"""Which format an archive's model file is in, decided from the manifest alone.

The rules follow TorchServe's BaseHandler (a `modelFile` means eager, then the serialized file's
suffix decides) and add `.pt2` packages. They import no torch, so the front end can name a model's
format (Open Inference Protocol metadata) without loading it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUPPORTED_FORMATS = (
    "eager (manifest modelFile + state_dict serializedFile), TorchScript (.pt), ONNX (.onnx), "
    "AOTInductor shared library (.so, with 'pt2: {export: {aot_compile: true}}' in the model "
    "YAML), AOTInductor or torch.export package (.pt2)"
)


class ModelFormat(enum.Enum):
    EAGER = "eager"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    AOT_SHARED_LIBRARY = "aotinductor-so"
    PT2_PACKAGE = "pt2-package"


class ModelLoadError(RuntimeError):
    """The archive's model cannot be loaded; the message says which file and what was expected."""


def wants_aot_compile(model_yaml_config: Mapping[str, Any]) -> bool:
    """True when the model YAML says `pt2: {export: {aot_compile: true}}` (TorchServe's switch)."""
    pt2 = model_yaml_config.get("pt2")
    export = pt2.get("export") if isinstance(pt2, Mapping) else None
    return isinstance(export, Mapping) and export.get("aot_compile") is True


def detect_format(
    *, serialized_file: str | None, model_file: str | None, model_yaml_config: Mapping[str, Any]
) -> ModelFormat:
    """TorchServe's order: a modelFile means eager, then the serialized file's suffix decides."""
    if model_file:
        return ModelFormat.EAGER
    suffix = Path(serialized_file or "").suffix
    if suffix == ".pt":
        return ModelFormat.TORCHSCRIPT
    if suffix == ".onnx":
        return ModelFormat.ONNX
    if suffix == ".pt2":
        return ModelFormat.PT2_PACKAGE
    if suffix == ".so" and wants_aot_compile(model_yaml_config):
        return ModelFormat.AOT_SHARED_LIBRARY
    if suffix == ".so":
        raise ModelLoadError(
            f"{serialized_file} is a shared library, which loads only when the model YAML has "
            "'pt2: {export: {aot_compile: true}}'"
        )
    named = serialized_file or "no serializedFile and no modelFile in the manifest"
    raise ModelLoadError(
        f"cannot load a model from {named}; supported formats: {SUPPORTED_FORMATS}"
    )
