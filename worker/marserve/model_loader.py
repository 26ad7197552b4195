"""Builds a ready `Service` from an extracted model directory, resolving the handler as TorchServe.

Resolution order: `module:function` or a module's `handle` function (initialised by one call with
`data=None`), then a module with exactly one handler class (instantiated, `initialize(context)`),
then a built-in handler name. Every failure names the module and what was expected of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from marserve import compat, envelopes
from marserve.context import Context
from marserve.handler_metrics import HandlerMetrics
from marserve.manifest import MANIFEST_PATH, read_manifest
from marserve.service import EntryPoint, Service
from marserve.utils import list_classes_from_module


class HandlerLoadError(ValueError):
    """The handler named by the manifest or override cannot be imported or has no entry point."""


class ModelLoader:
    """TorchServe's `TsModelLoader` interface: `load(...)` returns an initialised Service."""

    def load(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        model_name: str,
        model_dir: str,
        handler: str | None = None,
        gpu_id: int | None = None,
        batch_size: int | None = None,
        envelope: str | None = None,
        limit_max_image_pixels: bool = True,
        metrics_cache: HandlerMetrics | None = None,
    ) -> Service:
        manifest: dict[str, Any] | None = None
        if (Path(model_dir) / MANIFEST_PATH).is_file():
            manifest = read_manifest(model_dir)
        return build_service(
            model_dir=Path(model_dir),
            manifest=manifest,
            model_name=model_name,
            handler=handler,
            gpu_id=gpu_id,
            batch_size=batch_size if batch_size is not None else 1,
            envelope=envelope,
            limit_max_image_pixels=limit_max_image_pixels,
            metrics_cache=metrics_cache,
        )


TsModelLoader = ModelLoader


class ModelLoaderFactory:
    """TorchServe's way to obtain the loader: `ModelLoaderFactory.get_model_loader()`."""

    @staticmethod
    def get_model_loader() -> TsModelLoader:
        return TsModelLoader()


def load_service(
    model_dir: Path,
    *,
    model_name: str | None = None,
    handler: str | None = None,
    gpu_id: int | None = None,
    batch_size: int = 1,
    envelope: str | None = None,
    limit_max_image_pixels: bool = True,
    yaml_config: Mapping[str, Any] | None = None,
) -> Service:
    """What the serving process calls: the manifest is required, the overrides win over it.

    `yaml_config` is the model YAML when the caller has already read it; otherwise the Service
    reads the file the manifest names.
    """
    manifest = read_manifest(model_dir)
    return build_service(
        model_dir=Path(model_dir),
        manifest=manifest,
        model_name=model_name or manifest["model"]["modelName"],
        handler=handler,
        gpu_id=gpu_id,
        batch_size=batch_size,
        envelope=envelope,
        limit_max_image_pixels=limit_max_image_pixels,
        metrics_cache=None,
        yaml_config=yaml_config,
    )


def build_service(
    *,
    model_dir: Path,
    manifest: Mapping[str, Any] | None,
    model_name: str,
    handler: str | None,
    gpu_id: int | None,
    batch_size: int,
    envelope: str | None,
    limit_max_image_pixels: bool,
    metrics_cache: HandlerMetrics | None,
    yaml_config: Mapping[str, Any] | None = None,
) -> Service:
    """Resolves the handler, wraps it in the envelope, builds the Service and initialises it."""
    model = (manifest or {}).get("model", {})
    handler = handler or model.get("handler")
    if not handler:
        raise HandlerLoadError(f"model {model_name}: no handler given and none in the manifest")
    entry_point, initialize = resolve_handler(handler, model_dir=model_dir)
    envelope = envelope or model.get("envelope")
    if envelope:
        entry_point = envelopes.wrap(envelope, entry_point)
    service = Service(
        model_name,
        str(model_dir),
        manifest,
        entry_point,
        gpu_id,
        batch_size,
        limit_max_image_pixels,
        metrics_cache,
        model_yaml_config=yaml_config,
    )
    initialize(service.context)
    return service


def resolve_handler(
    handler: str, *, model_dir: Path
) -> tuple[EntryPoint, Callable[[Context], None]]:
    """The entry point of `handler` and the call that initialises it with the context."""
    module_part, _, function_name = handler.partition(":")
    module_name = Path(module_part).name.removesuffix(".py")
    module = _import_handler_module(module_name, model_dir=model_dir)
    function_name = function_name or "handle"
    function = getattr(module, function_name, None)
    if function is not None and not inspect.isclass(function):
        if not callable(function):
            raise HandlerLoadError(f"handler {module_name}:{function_name} is not callable")
        return function, lambda context: _call_for_init(function, context)
    if ":" in handler:
        raise HandlerLoadError(f"handler module {module_name} has no function {function_name}")
    handler_class = _single_handler_class(module)
    instance = handler_class()
    init = getattr(instance, "initialize", None)
    return instance.handle, (init if callable(init) else lambda context: None)


def _call_for_init(function: EntryPoint, context: Context) -> None:
    function(None, context)


def _single_handler_class(module: ModuleType) -> type:
    """The one class defined in `module` with `handle()`; a base of another candidate is skipped."""
    candidates = [
        cls for cls in list_classes_from_module(module) if callable(getattr(cls, "handle", None))
    ]
    leaves = [
        cls
        for cls in candidates
        if not any(o is not cls and issubclass(o, cls) for o in candidates)
    ]
    if not leaves:
        raise HandlerLoadError(
            f"handler module {module.__name__} has no class with a handle() method"
            " and no handle(data, context) function"
        )
    if len(leaves) > 1:
        names = ", ".join(cls.__name__ for cls in leaves)
        raise HandlerLoadError(
            f"handler {module.__name__} defines {len(leaves)} handler classes: {names}"
            " (expected exactly one, or a module:function entry point)"
        )
    return leaves[0]


def _import_handler_module(module_name: str, *, model_dir: Path) -> ModuleType:
    """Imports a handler from the model directory, a dotted module, or the built-ins, in order."""
    compat.install()
    add_to_import_path(model_dir)
    local_file = model_dir / f"{module_name}.py"
    if local_file.is_file():
        return _import_file(module_name, local_file)
    if _module_exists(module_name):
        return _import(module_name)
    from marserve.handlers import builtin

    if module_name in builtin.BUILTIN_HANDLERS:
        return _import(builtin.BUILTIN_HANDLERS[module_name])
    if module_name in builtin.UNSUPPORTED_BUILTIN_HANDLERS:
        reason = builtin.UNSUPPORTED_BUILTIN_HANDLERS[module_name]
        raise HandlerLoadError(f"built-in handler {module_name} is not available: {reason}")
    raise HandlerLoadError(
        f"handler {module_name} not found: no {module_name}.py in {model_dir}, no importable"
        f" module {module_name} and no built-in handler of that name"
        f" (built-ins: {', '.join(builtin.BUILTIN_HANDLERS)})"
    )


def add_to_import_path(model_dir: Path) -> None:
    """Model files shadow installed packages, as under TorchServe's PYTHONPATH, not the stdlib."""
    directory = str(model_dir.resolve())
    if directory in sys.path:
        return
    packages = (i for i, entry in enumerate(sys.path) if entry.endswith("-packages"))
    sys.path.insert(next(packages, len(sys.path)), directory)


def _import_file(module_name: str, path: Path) -> ModuleType:
    """Imports `path` as `module_name`, replacing a same-named module of another model dir."""
    stale = sys.modules.get(module_name)
    if stale is not None and getattr(stale, "__file__", None) != str(path.resolve()):
        del sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise HandlerLoadError(
            f"handler module {module_name} ({path}) failed to import:"
            f" {type(error).__name__}: {error}"
        ) from error
    return module


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise HandlerLoadError(
            f"handler module {name} failed to import: {type(error).__name__}: {error}"
        ) from error
