"""The `ts.*` modules marserve does not offer, each with the reason an ImportError gives users.

A handler that imports one of these fails at load with a message it can act on, instead of a
bare "No module named" that reads like a broken install.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from marserve.handlers.builtin import UNSUPPORTED_BUILTIN_HANDLERS

_LLM = (
    "LLM engine handlers need TorchServe's asynchronous worker and the vLLM or TensorRT-LLM "
    "engine, which marserve does not run; serve LLMs with a dedicated LLM server."
)
_DALI = "NVIDIA DALI pre-processing pipelines are not supported; pre-process in the handler."
_DISTRIBUTED = (
    "models split across torchrun processes (PiPPy, DeepSpeed) are not supported: each marserve "
    "worker is one process holding the whole model."
)
_HF = "TorchServe's Hugging Face LLM helpers are not provided; use transformers directly."
_METRICS = (
    "TorchServe's metrics YAML cache and host-metrics collector are not provided: record with "
    "context.metrics (add_metric_to_cache, add_time, add_counter ...), which marserve exports "
    "on its metrics endpoint."
)
_SERVER = "TorchServe's server and worker processes are replaced by `marserve serve`."

REASONS: Mapping[str, str] = MappingProxyType(
    {
        "ts.torch_handler.text_classifier": UNSUPPORTED_BUILTIN_HANDLERS["text_classifier"],
        "ts.torch_handler.text_handler": UNSUPPORTED_BUILTIN_HANDLERS["text_classifier"],
        "ts.torch_handler.contractions": UNSUPPORTED_BUILTIN_HANDLERS["text_classifier"],
        "ts.torch_handler.densenet_handler": (
            "a legacy example handler for one DenseNet model; use the image_classifier built-in."
        ),
        "ts.torch_handler.vllm_handler": _LLM,
        "ts.torch_handler.trt_llm_handler": _LLM,
        "ts.torch_handler.dali_handler": _DALI,
        "ts.torch_handler.dali_image_classifier": _DALI,
        "ts.handler_utils.preprocess": _DALI,
        "ts.torch_handler.distributed": _DISTRIBUTED,
        "ts.handler_utils.distributed": _DISTRIBUTED,
        "ts.handler_utils.micro_batching": (
            "marserve does not run a handler's stages on micro-batching thread pools; its server "
            "already forms batches (batchSize, maxBatchDelay), and a handler can split a large "
            "batch itself in handle()."
        ),
        "ts.handler_utils.hf_batch_streamer": _HF,
        "ts.utils.hf_utils": _HF,
        "ts.metrics.caching_metric": _METRICS,
        "ts.metrics.metric_abstract": _METRICS,
        "ts.metrics.metric_cache_abstract": _METRICS,
        "ts.metrics.metric_cache_yaml_impl": _METRICS,
        "ts.metrics.metric_collector": _METRICS,
        "ts.metrics.metric_encoder": _METRICS,
        "ts.metrics.process_memory_metric": _METRICS,
        "ts.metrics.system_metrics": _METRICS,
        "ts.torch_handler.unit_tests.test_utils.model_dir": (
            "it downloads weights from the internet into TorchServe's source tree; build test "
            "models locally instead."
        ),
        "ts.async_service": _SERVER,
        "ts.model_server": _SERVER,
        "ts.model_service_worker": _SERVER,
        "ts.arg_parser": _SERVER,
        "ts.launcher": _SERVER,
        "ts.llm_launcher": _SERVER,
    }
)
"""`ts` module name -> why marserve does not provide it."""
