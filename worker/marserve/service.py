"""Runs a handler on a batch and turns every outcome into one result per request.

The contract is TorchServe 0.12's `ts.service.Service` (batch shape, decoding, error codes,
PredictionTime). Beyond it, a failed batch is re-run one request at a time so only the request
that broke it gets the error; TorchServe fails the whole batch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marserve import responses
from marserve.context import Context, RequestProcessor
from marserve.errors import BatchResponseMismatch, PredictionException
from marserve.handler_metrics import HandlerMetrics
from marserve.results import PredictionResult
from marserve.utils import get_yaml_config

logger = logging.getLogger(__name__)

EntryPoint = Callable[[Any, Context], Any]
ISOLATE_KEY = "isolateBatchFailures"
PREDICTION_METRIC = "PredictionTime"


# TorchServe's frontend names every failure its Python worker reports this way, whatever its
# status; clients that read `type` see the same.
FAILURE_TYPE = "InternalServerException"


@dataclass(frozen=True)
class BatchFailure:
    """Why a whole batch failed: the status and message each of its requests gets."""

    code: int
    message: str
    retry_alone: bool
    """Whether running the requests one by one could give a different answer."""


class Service:
    """A loaded handler plus its context: what the serving process calls for each batch."""

    def __init__(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        model_name: str,
        model_dir: str,
        manifest: Mapping[str, Any] | None,
        entry_point: EntryPoint | None,
        gpu: int | None,
        batch_size: int,
        limit_max_image_pixels: bool = True,
        metrics_cache: HandlerMetrics | None = None,
        *,
        isolate_batch_failures: bool | None = None,
        model_yaml_config: Mapping[str, Any] | None = None,
    ) -> None:
        yaml_config = (
            _manifest_model_config(model_dir, manifest)
            if model_yaml_config is None
            else model_yaml_config
        )
        self._entry_point = entry_point
        self._context = Context(
            model_name,
            model_dir,
            manifest,
            batch_size,
            gpu,
            limit_max_image_pixels=limit_max_image_pixels,
            metrics=metrics_cache if metrics_cache is not None else HandlerMetrics(model_name),
            model_yaml_config=yaml_config,
        )
        if isolate_batch_failures is None:
            isolate_batch_failures = bool(yaml_config.get(ISOLATE_KEY, True))
        self.isolate_batch_failures = isolate_batch_failures

    @property
    def context(self) -> Context:
        return self._context

    @property
    def metrics(self) -> HandlerMetrics:
        assert self._context.metrics is not None
        return self._context.metrics

    @staticmethod
    def retrieve_data_for_inference(
        batch: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[list[RequestProcessor], list[dict[str, Any]], dict[int, str]]:
        """Splits a batch into per-request headers, inputs and the index → request id map.

        Each request's parameters become its input dict; parameter content types and request
        headers become its header dict. JSON and text values are decoded as TorchServe does.
        """
        if batch is None:
            raise ValueError("received invalid data: the batch is None")
        headers: list[RequestProcessor] = []
        inputs: list[dict[str, Any]] = []
        ids: dict[int, str] = {}
        for idx, request in enumerate(batch):
            request_headers: dict[str, Any] = {}
            model_input: dict[str, Any] = {}
            for parameter in request.get("parameters") or ():
                name = _text(parameter["name"])
                content_type = _text(parameter.get("contentType") or "")
                model_input[name] = decode_value(parameter.get("value"), content_type)
                request_headers[name] = {"content-type": content_type}
            for header in request.get("headers") or ():
                request_headers[_text(header["name"])] = _text(header["value"])
            headers.append(RequestProcessor(request_headers))
            inputs.append(model_input)
            ids[idx] = _text(request.get("requestId") or "")
        return headers, inputs, ids

    def predict(self, batch: Sequence[Mapping[str, Any]]) -> list[PredictionResult]:
        """One result per request, in batch order; never raises for a handler's failure."""
        headers, inputs, ids = self.retrieve_data_for_inference(batch)
        streamed_before = self._context.intermediate_responses_sent
        outcome = self._run(headers, inputs, ids)
        if not isinstance(outcome, BatchFailure):
            return outcome
        if self._may_rerun(headers, outcome, streamed_before):
            logger.warning(
                "batch of %d failed (%s); re-running its requests one by one",
                len(inputs),
                outcome.message,
            )
            return [self._run_alone(batch[idx]) for idx in range(len(inputs))]
        return [_failed(request_id, outcome) for request_id in ids.values()]

    def _may_rerun(
        self, headers: list[RequestProcessor], outcome: BatchFailure, streamed_before: int
    ) -> bool:
        """Re-running is only safe when it cannot repeat a visible effect or corrupt state.

        Not after partial answers were streamed (clients would get them twice), not for stateful
        sequences (their state would advance twice), not when the failure is not the requests'.
        """
        if len(headers) < 2 or not self.isolate_batch_failures or not outcome.retry_alone:
            return False
        if self._context.intermediate_responses_sent != streamed_before:
            return False
        sequence_header = self._context.header_key_sequence_id
        return all(h.get_request_property(sequence_header) is None for h in headers)

    def _run_alone(self, request: Mapping[str, Any]) -> PredictionResult:
        headers, inputs, ids = self.retrieve_data_for_inference([request])
        outcome = self._run(headers, inputs, ids)
        if isinstance(outcome, BatchFailure):
            return _failed(ids[0], outcome)
        return outcome[0]

    def _run(
        self,
        headers: list[RequestProcessor],
        inputs: list[dict[str, Any]],
        ids: dict[int, str],
    ) -> list[PredictionResult] | BatchFailure:
        if self._entry_point is None:
            raise RuntimeError(f"model {self._context.model_name} has no handler entry point")
        self._context.request_ids = ids
        self._context.request_processor = headers
        self.metrics.request_ids = ids
        started = time.perf_counter()
        try:
            output = self._entry_point(inputs, self._context)
        except Exception as error:
            return _classify(error)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not isinstance(output, list):
            logger.error("handler returned %s, not a list", type(output).__name__)
            return BatchFailure(503, "Invalid model predict output", False)
        if len(output) != len(inputs):
            return _mismatch(f"handler returned {len(output)} items for {len(inputs)} requests")
        try:
            results = [
                responses.success(idx=idx, request_id=ids[idx], value=item, context=self._context)
                for idx, item in enumerate(output)
            ]
        except responses.UnsupportedOutputError as error:
            logger.error("%s", error)
            return BatchFailure(503, "Unsupported model output data type.", False)
        self.metrics.add_time(PREDICTION_METRIC, elapsed_ms, None, "ms")
        return results


def emit_metrics(metrics: Iterable[object] | None) -> None:
    """Logs each metric as a `[METRICS]` line: TorchServe's helper for a handler's own metrics.

    marserve's `context.metrics` reaches the server without it; handlers that still call it
    get TorchServe's log lines.
    """
    for metric in metrics or ():
        logger.info("[METRICS]%s", metric)


def _manifest_model_config(model_dir: str, manifest: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The model YAML the manifest names (`configFile`), or an empty mapping without one."""
    model = (manifest or {}).get("model", {})
    config_file = model.get("configFile") if isinstance(model, Mapping) else None
    if not config_file:
        return {}
    path = os.path.join(model_dir, config_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model config {config_file} named by the manifest is not in {model_dir}"
        )
    return get_yaml_config(path)


def decode_value(value: Any, content_type: str) -> Any:
    """JSON bodies become objects and text bodies `str`; undecodable ones stay bytes."""
    if not isinstance(value, bytes | bytearray):
        return value
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        if media_type == "application/json":
            return json.loads(value)
        if media_type.startswith("text"):
            return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return value
    return value


def _classify(error: Exception) -> BatchFailure:
    """Maps a handler exception to TorchServe's status and message, logging the cause."""
    if isinstance(error, BatchResponseMismatch):
        return _mismatch(str(error))
    if isinstance(error, MemoryError) or _is_cuda_oom(error):
        logger.error("out of resources while predicting", exc_info=error)
        _release_cuda_cache()
        return BatchFailure(507, "Out of resources", True)
    if isinstance(error, PredictionException):
        logger.warning("handler raised %s", error)
        return BatchFailure(error.error_code, error.message, True)
    if "CUDA" in str(error):
        logger.error("CUDA failure while predicting", exc_info=error)
        return BatchFailure(507, "Out of resources", False)
    logger.error("prediction failed", exc_info=error)
    return BatchFailure(503, "Prediction failed", True)


def _mismatch(detail: str) -> BatchFailure:
    logger.error("%s", detail)
    return BatchFailure(503, "number of batch response mismatched", False)


def _is_cuda_oom(error: Exception) -> bool:
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(oom_type, type) and isinstance(error, oom_type):
        return True
    return "out of memory" in str(error).lower() and "CUDA" in str(error)


def _release_cuda_cache() -> None:
    """Gives cached GPU blocks back so the smaller re-runs that follow have room."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _failed(request_id: str, failure: BatchFailure) -> PredictionResult:
    return responses.failure(
        request_id=request_id,
        code=failure.code,
        error_type=FAILURE_TYPE,
        message=failure.message,
    )


def _text(value: str | bytes | bytearray) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
