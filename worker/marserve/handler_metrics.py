"""The metrics API handlers call as `context.metrics`, recording into a per-Service cache.

Handlers written for TorchServe call `add_time`, `add_counter`, `add_metric` ... with TorchServe's
signatures and `Dimension` objects. TorchServe prints each update to stdout for its frontend to
parse; marserve keeps typed records that the server drains after each predict and exports.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from marserve.wire import pickled_by_fields

TIME_UNITS = ("ms", "s")
SIZE_UNITS = ("MB", "kB", "GB", "B")


class MetricTypes(enum.Enum):
    """How a metric aggregates, with TorchServe's names and values."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class MetricsCacheValueError(ValueError):
    """A metric call with a value or unit that the metric's kind does not allow."""


class Dimension:
    """A `name: value` label attached to a metric (as TorchServe's `Dimension`)."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        return f"Dimension({self.name!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dimension) and (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def to_dict(self) -> dict[str, str]:
        return {"Name": self.name, "Value": self.value}


Dimensions = Sequence[Dimension] | Mapping[str, str] | None


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One metric update, as the server receives it when it drains the cache; it crosses from
    the worker process to the front end as it is."""

    name: str
    value: float
    unit: str
    dimensions: Mapping[str, str] = field(default_factory=dict)
    metric_type: str = MetricTypes.COUNTER.value
    request_id: str | None = None


class CachedMetric:
    """A metric declared up front (`add_metric_to_cache`), updated later with dimension values."""

    def __init__(
        self,
        *,
        cache: HandlerMetrics,
        name: str,
        unit: str,
        dimension_names: Sequence[str],
        metric_type: MetricTypes,
    ) -> None:
        self._cache = cache
        self.metric_name = name
        self.unit = unit
        self.dimension_names = list(dimension_names)
        self.metric_type = metric_type

    def add_or_update(
        self,
        value: float,
        dimension_values: Sequence[str] = (),
        request_id: str | None = None,
    ) -> None:
        if len(dimension_values) != len(self.dimension_names):
            raise MetricsCacheValueError(
                f"metric {self.metric_name} has dimensions {self.dimension_names}, "
                f"got {len(dimension_values)} values"
            )
        dimensions = dict(zip(self.dimension_names, dimension_values, strict=True))
        self._cache.record(
            name=self.metric_name,
            value=value,
            unit=self.unit,
            dimensions=dimensions,
            metric_type=self.metric_type,
            request_id=request_id or None,
        )

    update = add_or_update


class HandlerMetrics:
    """Records a handler's metric calls for one Service; `drain()` hands them to the server."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.request_ids: Mapping[int, str] | None = None
        self._records: list[MetricRecord] = []
        self._lock = threading.Lock()

    def drain(self) -> list[MetricRecord]:
        """Returns the records made since the last drain and forgets them."""
        with self._lock:
            records, self._records = self._records, []
        return records

    def add_metric(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None = None,
        dimensions: Dimensions = None,
        metric_type: MetricTypes | str = MetricTypes.COUNTER,
    ) -> None:
        self.record(
            name=name,
            value=value,
            unit=unit,
            dimensions=self._with_defaults(dimensions, level="Model"),
            metric_type=MetricTypes(metric_type),
            request_id=self._request_id(idx),
        )

    def add_counter(
        self, name: str, value: float, idx: int | None = None, dimensions: Dimensions = None
    ) -> None:
        self.add_metric(name, value, "count", idx, dimensions, MetricTypes.COUNTER)

    def add_time(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "ms",
        dimensions: Dimensions = None,
        metric_type: MetricTypes | str = MetricTypes.GAUGE,
    ) -> None:
        check_unit(name, unit, TIME_UNITS)
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_size(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "MB",
        dimensions: Dimensions = None,
        metric_type: MetricTypes | str = MetricTypes.GAUGE,
    ) -> None:
        check_unit(name, unit, SIZE_UNITS)
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_percent(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        dimensions: Dimensions = None,
        metric_type: MetricTypes | str = MetricTypes.GAUGE,
    ) -> None:
        self.add_metric(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: float, dimensions: Dimensions = None) -> None:
        self.record(
            name=name,
            value=value,
            unit="",
            dimensions=self._with_defaults(dimensions, level="Error"),
            metric_type=MetricTypes.COUNTER,
            request_id=None,
        )

    def add_metric_to_cache(
        self,
        metric_name: str,
        unit: str,
        dimension_names: Sequence[str] = (),
        metric_type: MetricTypes | str = MetricTypes.COUNTER,
    ) -> CachedMetric:
        """Declares a metric whose dimension values come with each update (TorchServe style)."""
        names = list(dimension_names)
        names += [default for default in ("ModelName", "Level") if default not in names]
        return CachedMetric(
            cache=self,
            name=metric_name,
            unit=unit,
            dimension_names=names,
            metric_type=MetricTypes(metric_type),
        )

    def record(
        self,
        *,
        name: str,
        value: float,
        unit: str,
        dimensions: Mapping[str, str],
        metric_type: MetricTypes,
        request_id: str | None,
    ) -> None:
        """Validates and stores one update; every public method ends here."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MetricsCacheValueError(f"metric {name} needs a number, got {value!r}")
        if metric_type is MetricTypes.COUNTER and value < 0:
            raise MetricsCacheValueError(f"counter {name} cannot go down (value {value})")
        entry = MetricRecord(
            name=name,
            value=float(value),
            unit=unit,
            dimensions=dict(dimensions),
            metric_type=metric_type.value,
            request_id=request_id,
        )
        with self._lock:
            self._records.append(entry)

    def _with_defaults(self, dimensions: Dimensions, *, level: str) -> dict[str, str]:
        if dimensions is None:
            merged: dict[str, str] = {}
        elif isinstance(dimensions, Mapping):
            merged = {str(key): str(value) for key, value in dimensions.items()}
        else:
            merged = {dimension.name: str(dimension.value) for dimension in dimensions}
        merged.setdefault("ModelName", self.model_name)
        merged.setdefault("Level", level)
        return merged

    def _request_id(self, idx: int | None) -> str | None:
        return request_id_for(self.request_ids, idx)


def request_id_for(request_ids: object, idx: int | None) -> str | None:
    """The id of request `idx`, or all of the batch's ids joined when no index is given.

    TorchServe's rule, shared by `HandlerMetrics` and the `MetricsStore` that TorchServe's own
    test context builds with a single id (a UUID) instead of the batch's map.
    """
    if isinstance(request_ids, Mapping):
        if idx is not None and idx in request_ids:
            return str(request_ids[idx])
        return ",".join(str(value) for value in request_ids.values()) or None
    return None if request_ids is None else str(request_ids)


def check_unit(name: str, unit: str, allowed: Sequence[str]) -> None:
    if unit not in allowed:
        raise MetricsCacheValueError(f"metric {name}: unit {unit!r} is not one of {list(allowed)}")
