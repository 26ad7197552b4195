"""Every metric the server exports, defined once: TorchServe-compatible names and native ones.

TorchServe's names (`ts_inference_latency_microseconds`, `Requests2XX`, `PredictionTime` ...) keep
existing dashboards working; they are counters and gauges without the `_total` suffix that
prometheus_client would add, so they live in a small collector of their own. The native metrics are
histograms with `model` and `version` labels, plus the queue and in-flight gauges autoscalers use.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Collection, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from marserve import contract
from marserve.handler_metrics import MetricRecord
from marserve.server.metric_tallies import CounterFamily, CounterTally, HistogramFamily

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")


class CompatFamilies:
    """Counters and gauges exported under exact names, as TorchServe and handler code spell them."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, tuple[str, ...], dict[tuple[str, ...], float]]] = {}

    def declare(self, name: str, kind: str, labelnames: Sequence[str]) -> None:
        self._families.setdefault(name, (kind, tuple(labelnames), {}))

    def add(self, name: str, labels: tuple[str, ...], value: float) -> None:
        values = self._families[name][2]
        values[labels] = values.get(labels, 0.0) + value

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self._families[name][2][labels] = value

    def labelnames(self, name: str) -> tuple[str, ...] | None:
        family = self._families.get(name)
        return family[1] if family else None

    def collect(self) -> Iterable[Metric]:
        for name, (kind, labelnames, values) in list(self._families.items()):
            metric = Metric(name, f"{name} ({kind})", kind)
            for labels, value in list(values.items()):
                metric.add_sample(name, dict(zip(labelnames, labels, strict=True)), value)
            yield metric


class ModelMetrics:
    """Metric children bound to one model's labels once, so the hot path does no label lookups."""

    def __init__(self, server: ServerMetrics, *, model: str, version: str) -> None:
        self._server = server
        self.model = model
        self._ts_labels = (model, version, server.hostname)
        self._model_level = (model, "Model", server.hostname)
        self.request_seconds = server.request_seconds.child(model, version)
        self.queue_seconds = server.queue_seconds.child(model, version)
        self.prediction_seconds = server.prediction_seconds.labels(model, version)
        self.handler_seconds = server.handler_seconds.labels(model, version)
        self.batch_size = server.batch_size.labels(model, version)
        self.inflight = server.inflight.labels(model)
        self.queue_depth = server.queue_depth.labels(model)
        self.restarts = server.worker_restarts.labels(model)
        self.workers = server.workers.labels(model)
        self.rejected_messages = server.worker_messages_rejected.labels(model)
        self.memory_recycles = server.worker_recycles.labels(model, version, "memory")
        self.load_seconds = server.model_load_seconds.labels(model)
        self._version = version
        self._codes: dict[int, CounterTally] = {}

    def watch(
        self,
        *,
        inflight: Callable[[], float],
        queued: Callable[[], float],
        workers: Callable[[], float],
    ) -> None:
        """Reads the in-flight, queue-depth and worker gauges from the scheduler when scraped, so
        the request path updates plain integers instead of locked gauge values per request."""
        self.inflight.set_function(inflight)
        self.queue_depth.set_function(queued)
        self.workers.set_function(workers)

    def request_done(self, *, code: int, total_s: float, queue_s: float) -> None:
        """Records one finished inference request under both naming schemes."""
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._server.requests.child(
                self.model, self._version, str(code)
            )
        child.value += 1
        self.request_seconds.observe(total_s)
        compat = self._server.compat
        compat.add("ts_inference_requests_total", self._ts_labels, 1)
        compat.add("ts_inference_latency_microseconds", self._ts_labels, total_s * 1e6)
        if queue_s >= 0:
            self.queue_seconds.observe(queue_s)
            compat.add("ts_queue_latency_microseconds", self._ts_labels, queue_s * 1e6)
            compat.set("QueueTime", ("Host", self._server.hostname), queue_s * 1e3)

    def worker_loaded(self, *, worker_name: str, seconds: float) -> None:
        self.load_seconds.set(seconds)
        self._server.compat.set(
            "WorkerLoadTime", (worker_name, "Host", self._server.hostname), seconds * 1e3
        )

    def handler_records(self, records: Iterable[MetricRecord]) -> None:
        """Exports metrics drained from `context.metrics` in the worker process."""
        for record in records:
            if record.name == "PredictionTime":
                self.prediction_seconds.observe(_seconds(record.value, record.unit))
            elif record.name == "HandlerTime":
                self.handler_seconds.observe(_seconds(record.value, record.unit))
            self._server.handler_metric(
                name=record.name,
                value=record.value,
                dimensions=dict(record.dimensions),
                metric_type=record.metric_type,
            )


def _declared(family: contract.MetricFamily) -> tuple[str, str, tuple[str, ...]]:
    """The name, help text and labels prometheus_client declares a family with."""
    return family.name, family.documentation, family.labels


def _seconds(value: float, unit: str) -> float:
    return value / 1e3 if unit in ("ms", "Milliseconds") else value


class ServerMetrics:
    """The server's registry; one instance per server, passed down, never a module global."""

    def __init__(self, *, hostname: str | None = None) -> None:
        self.hostname = hostname or socket.gethostname()
        self.registry = CollectorRegistry(auto_describe=True)
        self.compat = CompatFamilies()
        self.registry.register(self.compat)
        model_version = ("model_name", "model_version", "hostname")
        for name in (
            "ts_inference_requests_total",
            "ts_inference_latency_microseconds",
            "ts_queue_latency_microseconds",
        ):
            self.compat.declare(name, "counter", model_version)
        for name in ("Requests2XX", "Requests4XX", "Requests5XX"):
            self.compat.declare(name, "counter", ("Level", "Hostname"))
        self.compat.declare("QueueTime", "gauge", ("Level", "Hostname"))
        self.compat.declare("WorkerLoadTime", "gauge", ("WorkerName", "Level", "Hostname"))
        for name in ("PredictionTime", "HandlerTime"):
            self.compat.declare(name, "gauge", ("ModelName", "Level", "Hostname"))
        r = self.registry
        # Observed per request: plain tallies rendered at scrape (`metric_tallies`).
        self.request_seconds = HistogramFamily(contract.REQUEST_DURATION, buckets=LATENCY_BUCKETS)
        r.register(self.request_seconds)
        self.queue_seconds = HistogramFamily(contract.QUEUE_WAIT, buckets=LATENCY_BUCKETS)
        r.register(self.queue_seconds)
        self.prediction_seconds = Histogram(
            *_declared(contract.PREDICTION_DURATION), buckets=LATENCY_BUCKETS, registry=r
        )
        self.handler_seconds = Histogram(
            *_declared(contract.HANDLER_DURATION), buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            *_declared(contract.BATCH_SIZE), buckets=BATCH_BUCKETS, registry=r
        )
        self.requests = CounterFamily(contract.REQUESTS)
        r.register(self.requests)
        self.inflight = Gauge(*_declared(contract.INFLIGHT_REQUESTS), registry=r)
        self.queue_depth = Gauge(*_declared(contract.QUEUE_DEPTH), registry=r)
        self.worker_restarts = Counter(*_declared(contract.WORKER_RESTARTS), registry=r)
        self.worker_recycles = Counter(*_declared(contract.WORKER_RECYCLES), registry=r)
        self.workers = Gauge(*_declared(contract.WORKERS), registry=r)
        self.worker_messages_rejected = Counter(
            *_declared(contract.WORKER_MESSAGES_REJECTED), registry=r
        )
        self.model_load_seconds = Gauge(*_declared(contract.MODEL_LOAD_DURATION), registry=r)
        self._handler_histograms: dict[str, tuple[Histogram, tuple[str, ...]]] = {}

    def for_model(self, *, model: str, version: str) -> ModelMetrics:
        return ModelMetrics(self, model=model, version=version)

    def response(self, status: int) -> None:
        """Counts every HTTP response by class, as TorchServe's Requests2XX/4XX/5XX do."""
        family = "Requests2XX" if status < 400 else "Requests4XX" if status < 500 else "Requests5XX"
        self.compat.add(family, ("Host", self.hostname), 1)

    def handler_metric(
        self, *, name: str, value: float, dimensions: dict[str, str], metric_type: str
    ) -> None:
        """Exports one handler metric under its own name; a histogram gets prometheus buckets."""
        name = _INVALID_NAME.sub("_", name)
        dimensions = {_INVALID_NAME.sub("_", k): str(v) for k, v in dimensions.items()}
        dimensions.setdefault("Hostname", self.hostname)
        kind = metric_type.lower().rsplit(".", 1)[-1]
        if kind == "histogram":
            histogram, labelnames = self._handler_histograms.get(name) or self._histogram(
                name, dimensions
            )
            histogram.labels(*(dimensions.get(n, "") for n in labelnames)).observe(value)
            return
        kind = "counter" if kind == "counter" else "gauge"
        labelnames_or_none = self.compat.labelnames(name)
        if labelnames_or_none is None:
            labelnames_or_none = tuple(sorted(dimensions))
            self.compat.declare(name, kind, labelnames_or_none)
        labels = tuple(dimensions.get(n, "") for n in labelnames_or_none)
        if kind == "counter":
            self.compat.add(name, labels, value)
        else:
            self.compat.set(name, labels, value)

    def _histogram(
        self, name: str, dimensions: dict[str, str]
    ) -> tuple[Histogram, tuple[str, ...]]:
        labelnames = tuple(sorted(dimensions))
        histogram = Histogram(
            name, f"{name} (handler histogram)", labelnames, registry=self.registry
        )
        self._handler_histograms[name] = (histogram, labelnames)
        return histogram, labelnames

    def exposition(self, names: Collection[str] = ()) -> bytes:
        """The Prometheus text of every metric, or, as TorchServe's `/metrics?name[]=...`, only
        the families asked for: by family name (`marserve_queue_wait_seconds`) or by one of its
        sample names (`ts_inference_requests_total`, `..._bucket`). Unknown names select
        nothing, as in TorchServe."""
        if not names:
            return generate_latest(self.registry)
        return generate_latest(_Selected(self.registry, frozenset(names)))


class _Selected(Collector):
    """The families of a registry that carry one of the wanted names."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.name in self._names or any(s.name in self._names for s in family.samples):
                yield family
