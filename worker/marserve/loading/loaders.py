"""Running the loader that fits an archive's model file, in the format `format_detection` found.

A file that cannot be loaded fails with a message naming it and what was expected, instead of a
bare "No model weights".
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from marserve.loading.device import map_location
from marserve.loading.format_detection import ModelFormat, ModelLoadError


def load_model(
    model_format: ModelFormat,
    *,
    model_dir: Path,
    serialized_file: str | None,
    model_file: str | None,
    device: torch.device,
) -> Any:
    """Loads the model in `model_format` onto `device`, ready for inference."""
    weights = model_dir / serialized_file if serialized_file else None
    if model_format is ModelFormat.EAGER:
        assert model_file is not None
        return load_eager(
            model_dir=model_dir, model_file=model_file, weights=weights, device=device
        )
    assert weights is not None
    require_file(weights)
    loaders: dict[ModelFormat, Callable[[Path, torch.device], Any]] = {
        ModelFormat.TORCHSCRIPT: load_torchscript,
        ModelFormat.ONNX: load_onnx,
        ModelFormat.AOT_SHARED_LIBRARY: load_aot_shared_library,
        ModelFormat.PT2_PACKAGE: load_pt2_package,
    }
    return loaders[model_format](weights, device)


def load_eager(
    *, model_dir: Path, model_file: str, weights: Path | None, device: torch.device
) -> torch.nn.Module:
    """Imports `model_file`, instantiates its one nn.Module class and loads the state_dict."""
    model_class = model_class_from_file(model_dir / model_file)
    model = model_class()
    if weights is not None:
        require_file(weights)
        try:
            on_load = "cpu" if device.type == "xla" else device
            state_dict = torch.load(weights, map_location=on_load, weights_only=True)
        except Exception as error:
            raise ModelLoadError(
                f"{weights.name} is not a state_dict that loads safely (weights_only): {error}"
            ) from error
        model.load_state_dict(state_dict)
    return model.to(device).eval()


def model_class_from_file(path: Path) -> type[torch.nn.Module]:
    """The single torch.nn.Module subclass defined in the model file at `path`."""
    if not path.is_file():
        raise ModelLoadError(f"the model file {path.name} named by the manifest is missing")
    module = _import_model_file(path)
    classes = [
        member
        for _, member in inspect.getmembers(module, inspect.isclass)
        if issubclass(member, torch.nn.Module) and member.__module__ == module.__name__
    ]
    if len(classes) != 1:
        names = ", ".join(sorted(cls.__name__ for cls in classes)) or "none"
        raise ModelLoadError(
            f"{path.name} must define exactly one torch.nn.Module subclass, found {names}"
        )
    return classes[0]


def _import_model_file(path: Path) -> ModuleType:
    """The module of `path`: the one the handler already imported, else a fresh private one.

    A private name keeps model files from taking over a global module name: a `json.py` model
    file must not replace the standard library's json, nor one model's `model.py` another's.
    """
    existing = sys.modules.get(path.stem)
    existing_file = getattr(existing, "__file__", None)
    if existing is not None and existing_file and Path(existing_file).resolve() == path.resolve():
        return existing
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"marserve_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"the model file {path.name} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """A `.pt` written by `torch.jit.save`; a plain `torch.save` file gets a hint instead."""
    try:
        module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location=device
        )
    except RuntimeError as error:
        if "constants.pkl" in str(error):
            raise ModelLoadError(
                f"{path.name} was saved with torch.save, not torch.jit.save: a state_dict "
                "needs the model's class file in the manifest (--model-file)"
            ) from error
        raise ModelLoadError(f"{path.name} is not a TorchScript archive: {error}") from error
    return module.eval()


def load_onnx(path: Path, device: torch.device) -> Any:
    """An ONNX Runtime session; onnxruntime is imported only when a model needs it."""
    from marserve.loading.onnx_session import open_onnx_session

    try:
        return open_onnx_session(path, device)
    except Exception as error:  # onnxruntime raises its own exception types, not one base
        raise ModelLoadError(
            f"{path.name} is not an ONNX model ONNX Runtime can load: {error}"
        ) from error


def load_aot_shared_library(path: Path, device: torch.device) -> Callable[..., Any]:
    """TorchServe's legacy AOTInductor path: a `.so` made by `torch._export.aot_compile`."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loaded: Callable[..., Any] = torch._export.aot_load(str(path), map_location(device) or "cpu")
    return loaded


def load_pt2_package(path: Path, device: torch.device) -> Callable[..., Any]:
    """An AOTInductor package (`aoti_compile_and_package`) or a `torch.export.save` program."""
    if _is_aoti_package(path):
        device_index = device.index if device.type == "cuda" and device.index is not None else -1
        return torch._inductor.aoti_load_package(str(path), device_index=device_index)
    program = torch.export.load(str(path))
    return program.module().to(device)


def _is_aoti_package(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/data/aotinductor/" in name for name in archive.namelist())
    except zipfile.BadZipFile as error:
        raise ModelLoadError(f"{path.name} is not a .pt2 package (not a zip file)") from error


def require_file(path: Path) -> None:
    """Fails with the manifest's file name when the archive does not contain it."""
    if not path.is_file():
        raise ModelLoadError(f"the serialized file {path.name} named by the manifest is missing")
