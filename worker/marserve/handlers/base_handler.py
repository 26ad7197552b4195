"""`BaseHandler`: TorchServe's default handler contract, so existing handlers run unchanged.

`initialize` picks the device, loads the model in whichever format the archive carries,
compiles it when the model YAML asks and reads `index_to_name.json`; `handle` runs
preprocess -> inference -> postprocess and records `HandlerTime` in milliseconds. Subclasses
override only the stages they need, exactly as with TorchServe.

The handler reaches its context only through TorchServe's public Context API, so it runs the same
with TorchServe's `MockContext` or a test double. The module also offers TorchServe's
module-level names: the backend flags (`ONNX_AVAILABLE` ...) and `setup_ort_session`.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from marserve.context import Context, request_header
from marserve.errors import PredictionException
from marserve.handlers import backends
from marserve.handlers.backends import setup_ort_session
from marserve.handlers.labels import INDEX_TO_NAME_FILE, load_label_mapping
from marserve.handlers.timer import timed
from marserve.loading import format_detection, loaders
from marserve.loading.compile import EagerFallback, compile_model, compile_options
from marserve.loading.device import enable_tensor_cores, map_location, select_device

__all__ = ["BaseHandler", "setup_ort_session"]

logger = logging.getLogger(__name__)

PROFILER_ENV = "ENABLE_TORCH_PROFILER"
PROFILER_TRACE_DIR = Path("/tmp/pytorch_profiler")


def __getattr__(name: str) -> bool:
    """TorchServe's backend flags (`ONNX_AVAILABLE`, `XLA_AVAILABLE` ...), probed when read."""
    if name in backends.PROBES:
        return backends.available(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BaseHandler(abc.ABC):  # noqa: B024 - abstract in name only, as TorchServe's is
    """Loads the archive's model and serves it; every stage can be overridden."""

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, str] | None = None
        self.device: torch.device | None = None
        self.initialized = False
        self.context: Context | None = None
        self.model_pt_path: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.map_location: str | None = None
        self.explain = False
        self.target = 0
        self.profiler_args: dict[str, Any] = {}
        self.model_yaml_config: dict[str, Any] = {}
        self.model_format: format_detection.ModelFormat | None = None

    def initialize(self, context: Context) -> None:
        """Selects the device, loads (and optionally compiles) the model, reads the labels."""
        self.context = context
        self.model_yaml_config = dict(getattr(context, "model_yaml_config", None) or {})
        properties = context.system_properties
        self.device = select_device(properties.get("gpu_id"))
        self.map_location = map_location(self.device)
        enable_tensor_cores(self.device)
        self.manifest = context.manifest
        model_dir = str(properties["model_dir"])
        model_entry = self.manifest.get("model", {})
        serialized_file = model_entry.get("serializedFile")
        model_file = model_entry.get("modelFile")
        self.model_pt_path = os.path.join(model_dir, serialized_file) if serialized_file else None
        self.model_format = format_detection.detect_format(
            serialized_file=serialized_file,
            model_file=model_file,
            model_yaml_config=self.model_yaml_config,
        )
        self.model = self._load_model(model_dir, model_file, serialized_file)
        options = compile_options(self.model_yaml_config)
        if options is not None:
            self.model = compile_model(self.model, options)
        self.mapping = load_label_mapping(Path(model_dir) / INDEX_TO_NAME_FILE)
        self.initialized = True
        logger.debug("model %s loaded as %s", self.model_pt_path, self.model_format.value)

    def _load_model(
        self, model_dir: str, model_file: str | None, serialized_file: str | None
    ) -> Any:
        """Dispatches to the overridable TorchServe loader methods, then to `loaders`."""
        if self.model_format is format_detection.ModelFormat.EAGER:
            assert model_file is not None
            model = self._load_pickled_model(model_dir, model_file, self.model_pt_path)
            return model.to(self.device).eval()
        assert self.model_pt_path is not None
        loaders.require_file(Path(self.model_pt_path))
        if self.model_format is format_detection.ModelFormat.TORCHSCRIPT:
            return self._load_torchscript_model(self.model_pt_path)
        if self.model_format is format_detection.ModelFormat.AOT_SHARED_LIBRARY:
            return self._load_torch_export_aot_compile(self.model_pt_path)
        assert self.model_format is not None and self.device is not None
        return loaders.load_model(
            self.model_format,
            model_dir=Path(model_dir),
            serialized_file=serialized_file,
            model_file=model_file,
            device=self.device,
        )

    def _load_pickled_model(
        self, model_dir: str, model_file: str, model_pt_path: str | None
    ) -> torch.nn.Module:
        """Eager mode: the one nn.Module class in `model_file` with the state_dict loaded."""
        return loaders.load_eager(
            model_dir=Path(model_dir),
            model_file=model_file,
            weights=Path(model_pt_path) if model_pt_path else None,
            device=self._device(),
        )

    def _load_torchscript_model(self, model_pt_path: str) -> torch.jit.ScriptModule:
        return loaders.load_torchscript(Path(model_pt_path), self._device())

    def _load_torch_export_aot_compile(self, model_so_path: str) -> Callable[..., Any]:
        return loaders.load_aot_shared_library(Path(model_so_path), self._device())

    def _use_torch_export_aot_compile(self) -> bool:
        return format_detection.wants_aot_compile(self.model_yaml_config)

    @timed
    def preprocess(self, data: Any) -> Any:
        """Default: the request rows as one tensor on the model's device.

        Rows that arrive as request dicts contribute their `data` or `body` value, so the
        handler serves JSON arrays without an envelope (TorchServe's fails on such rows).
        """
        return torch.as_tensor([_payload(row) for row in data], device=self.device)

    @timed
    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """The forward pass, without autograd bookkeeping."""
        with torch.inference_mode():
            return self.model(data.to(self.device), *args, **kwargs)

    @timed
    def postprocess(self, data: Any) -> Any:
        """Default: the output tensor as nested lists, one entry per request."""
        return data.tolist()

    def handle(self, data: Any, context: Context) -> Any:
        """preprocess -> inference (or explanation) -> postprocess, timed as HandlerTime (ms)."""
        start = time.perf_counter()
        self.context = context
        if os.environ.get(PROFILER_ENV):
            if self.manifest is None:
                self.manifest = context.manifest
            output, _ = self._infer_with_profiler(data)
        elif self._is_describe():
            output = [self.describe_handle()]
        else:
            output = self._run_stages(data)
        elapsed_ms = round((time.perf_counter() - start) * 1000, 2)
        if context.metrics is not None:
            context.metrics.add_time("HandlerTime", elapsed_ms, None, "ms")
        return output

    def _run_stages(self, data: Any) -> Any:
        preprocessed = self.preprocess(data)
        if self._is_explain():
            return self.explain_handle(preprocessed, data)
        return self.postprocess(self.inference(preprocessed))

    def _infer_with_profiler(self, data: Any) -> tuple[Any, torch.profiler.profile]:
        """Runs the stages under torch.profiler; traces go where `profiler_args` says."""
        if not self.profiler_args:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler_args = {"activities": activities, "record_shapes": True}
        if "on_trace_ready" not in self.profiler_args:
            model_name = (self.manifest or {}).get("model", {}).get("modelName", "")
            trace_dir = PROFILER_TRACE_DIR / model_name
            self.profiler_args["on_trace_ready"] = torch.profiler.tensorboard_trace_handler(
                str(trace_dir)
            )
            logger.info("saving profiler traces to %s", trace_dir)
        with torch.profiler.profile(**self.profiler_args) as profiler:
            output = self._run_stages(data)
        return output, profiler

    def explain_handle(self, data_preprocess: Any, raw_data: Any) -> Any:
        """Explanations come from the subclass's `get_insights(tensor, inputs, target)`."""
        get_insights = getattr(self, "get_insights", None)
        if get_insights is None:
            raise PredictionException(f"{type(self).__name__} does not provide explanations", 501)
        row = raw_data[0] if raw_data else None
        inputs, target = None, 0
        if isinstance(row, dict):
            inputs = row.get("data") or row.get("body")
            target = row.get("target") or 0
        self.target = target
        return get_insights(data_preprocess, inputs, target)

    def describe_handle(self) -> dict[str, Any]:
        """What this worker serves: the answer to a request with header `describe: True`."""
        model_entry = (self.manifest or {}).get("model", {})
        return {
            "modelName": model_entry.get("modelName"),
            "modelVersion": model_entry.get("modelVersion"),
            "handler": type(self).__name__,
            "format": self.model_format.value if self.model_format else None,
            "device": str(self.device),
            "compiled": isinstance(self.model, EagerFallback) and self.model.is_compiled,
        }

    def get_device(self) -> torch.device | None:
        return self.device

    def _is_explain(self) -> bool:
        if self._first_request_header("explain") == "True":
            self.explain = True
            return True
        return False

    def _is_describe(self) -> bool:
        return bool(self._first_request_header("describe") == "True")

    def _first_request_header(self, key: str) -> Any:
        return request_header(self.context, 0, key)

    def _device(self) -> torch.device:
        return self.device if self.device is not None else torch.device("cpu")


def _payload(row: Any) -> Any:
    if isinstance(row, dict) and ("data" in row or "body" in row):
        return row.get("data") if row.get("data") is not None else row.get("body")
    return row
