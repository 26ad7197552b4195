"""`@timed`: stage timings, recorded when the model YAML has `handler: {profile: true}`.

TorchServe's built-in stages carry this decorator and custom handlers import it to time their own
methods; each call then records `ts_handler_<method>` in milliseconds. Without the switch it
costs one dictionary look-up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


def timed(method: Callable[P, R]) -> Callable[P, R]:
    """Times a handler method (its first argument is the handler) when profiling is on."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        handler = args[0]
        context = getattr(handler, "context", None)
        if not _profiling(context):
            return method(*args, **kwargs)
        start = time.perf_counter()
        result = method(*args, **kwargs)
        _synchronize(getattr(handler, "device", None))
        elapsed_ms = (time.perf_counter() - start) * 1000
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            metrics.add_time(f"ts_handler_{method.__name__}", elapsed_ms, None, "ms")
        return result

    return wrapper


def _profiling(context: Any) -> bool:
    config = getattr(context, "model_yaml_config", None) or {}
    handler_config = config.get("handler")
    return isinstance(handler_config, dict) and bool(handler_config.get("profile"))


def _synchronize(device: Any) -> None:
    """GPU work is asynchronous: wait for it so the timing covers the kernels, not their launch."""
    if isinstance(device, torch.device) and device.type == "cuda":
        torch.cuda.synchronize(device)
