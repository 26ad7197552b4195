"""TorchServe's older metrics API: `MetricsStore`, `Metric` and `Units` (`ts.metrics.*`).

TorchServe keeps `MetricsStore` for handlers and tests written before its metrics cache; its own
`MockContext` hands one to handlers as `context.metrics`. It keeps every metric as a `Metric`
in `store` and logs each update as a `[METRICS]` line, which is all a handler or test can see.
Served models get marserve's `HandlerMetrics` instead, which the server exports.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from marserve.handler_metrics import (
    SIZE_UNITS,
    TIME_UNITS,
    Dimension,
    MetricTypes,
    check_unit,
    request_id_for,
)

logger = logging.getLogger(__name__)


class Units:
    """Unit abbreviations and the names TorchServe reports them under."""

    def __init__(self) -> None:
        self.units: dict[str | None, str] = {
            "ms": "Milliseconds",
            "s": "Seconds",
            "percent": "Percent",
            "count": "Count",
            "MB": "Megabytes",
            "GB": "Gigabytes",
            "kB": "Kilobytes",
            "B": "Bytes",
            "": "unit",
            None: "unit",
        }


MetricUnit = Units()


class Metric:
    """One named metric with its dimensions; `value` is the first value, as in TorchServe."""

    def __init__(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        name: str,
        value: float,
        unit: str | None,
        dimensions: Sequence[Dimension],
        request_id: str | None = None,
        metric_method: str | None = None,
    ) -> None:
        self.metric_type = MetricTypes.COUNTER
        self.dimensions = list(dimensions)
        self.dimension_names = [dimension.name for dimension in self.dimensions]
        self.dimension_values = [dimension.value for dimension in self.dimensions]
        self.name = name
        self.unit = MetricUnit.units.get(unit, unit or "unit")
        self.metric_method = metric_method
        self.value = value
        self.request_id = request_id

    def update(self, value: float) -> None:
        """Reports a new value; TorchServe logs it and leaves `value` as it was."""
        logger.info("[METRICS]%s", self._line(value))

    def reset(self) -> None:
        self.update(0)

    def __str__(self) -> str:
        return self._line(self.value)

    def _line(self, value: float) -> str:
        dimensions = ",".join(str(dimension) for dimension in self.dimensions)
        line = f"{self.name}.{self.unit}:{value}|#{dimensions}|#hostname:{socket.gethostname()}"
        line += f",{int(time.time())}"
        return f"{line},{self.request_id}" if self.request_id else line

    def to_dict(self) -> dict[str, Any]:
        return {
            "MetricName": self.name,
            "Value": self.value,
            "Unit": self.unit,
            "Dimensions": self.dimensions,
            "Timestamp": int(time.time()),
            "HostName": socket.gethostname(),
            "RequestId": self.request_id,
        }


class MetricsStore:
    """Creates metrics on first use and updates them after, keyed by name, unit and dimensions."""

    def __init__(self, request_ids: Any, model_name: str) -> None:
        self.store: list[Metric] = []
        self.request_ids = request_ids
        self.model_name = model_name
        self.cache: dict[str, Metric] = {}

    def add_counter(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
    ) -> None:
        self._add_or_update(name, value, idx=idx, unit="count", dimensions=dimensions)

    def add_time(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "ms",
        dimensions: list[Dimension] | None = None,
    ) -> None:
        check_unit(name, unit, TIME_UNITS)
        self._add_or_update(name, value, idx=idx, unit=unit, dimensions=dimensions)

    def add_size(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "MB",
        dimensions: list[Dimension] | None = None,
    ) -> None:
        check_unit(name, unit, SIZE_UNITS)
        self._add_or_update(name, value, idx=idx, unit=unit, dimensions=dimensions)

    def add_percent(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
    ) -> None:
        self._add_or_update(name, value, idx=idx, unit="percent", dimensions=dimensions)

    def add_error(self, name: str, value: Any, dimensions: list[Dimension] | None = None) -> None:
        """An error metric: not tied to a request, so it carries `Level: Error`."""
        self._store(name, value, request_id=None, unit="", dimensions=dimensions)

    def add_metric(
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
    ) -> None:
        self._add_or_update(name, value, idx=idx, unit=unit, dimensions=dimensions)

    def _add_or_update(
        self,
        name: str,
        value: float,
        *,
        idx: int | None,
        unit: str,
        dimensions: list[Dimension] | None,
    ) -> None:
        request_id = request_id_for(self.request_ids, idx)
        self._store(name, value, request_id=request_id, unit=unit, dimensions=dimensions)

    def _store(
        self,
        name: str,
        value: Any,
        *,
        request_id: str | None,
        unit: str,
        dimensions: list[Dimension] | None,
    ) -> None:
        if dimensions is not None and not isinstance(dimensions, list):
            raise ValueError("Please provide a list of dimensions")
        dimensions = list(dimensions or [])
        if request_id is None:
            dimensions.append(Dimension("Level", "Error"))
        else:
            dimensions += [Dimension("ModelName", self.model_name), Dimension("Level", "Model")]
        key = "-".join([name, unit, str(request_id), *(str(d) for d in dimensions)])
        if key in self.cache:
            self.cache[key].update(value)
            return
        metric = Metric(name, value, unit, dimensions, request_id)
        self.store.append(metric)
        self.cache[key] = metric
