"""`make chart`: writes the parts of the Helm chart that mirror marserve.contract.

The chart cannot import Python, so what it shares with the worker and the operator (metric names
in queries, the operator's variables, port names) is written here from the contract instead of
being retyped. A generated part is a whole file (files/dashboard.json) or the lines between a
`>>> generated: NAME` and a `<<< generated: NAME` marker in a hand-written template, indented as
the opening marker is. tests/chart/test_generated.py fails when the committed chart differs.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from marserve import contract
from marserve_operator.resources.metrics_queries import adapter_metric_queries

CHART_DIR = Path(__file__).resolve().parents[1] / "charts" / "marserve"
MODEL = contract.METRIC_LABELS.model
CODE = contract.METRIC_LABELS.code
REASON = contract.METRIC_LABELS.reason


def _kube_state_label(key: str) -> str:
    """kube-state-metrics exports an object's label `a.b/c-d` as `label_a_b_c_d`."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=1000)


# --- PrometheusRule ------------------------------------------------------------------------------

RECORDING_RULES: tuple[tuple[str, str], ...] = (
    (
        "marserve_model:requests:rate1m",
        f"sum by (namespace, {MODEL}) (rate({contract.REQUESTS.series}[1m]))",
    ),
    (
        "marserve_model:request_errors:rate1m",
        f'sum by (namespace, {MODEL}) (rate({contract.REQUESTS.series}{{{CODE}=~"5.."}}[1m]))',
    ),
    (
        "marserve_model:request_duration_seconds:p95_5m",
        f"histogram_quantile(0.95, sum by (namespace, {MODEL}, le) "
        f"(rate({contract.REQUEST_DURATION.bucket}[5m])))",
    ),
    (
        "marserve_model:queue_wait_seconds:p95_5m",
        f"histogram_quantile(0.95, sum by (namespace, {MODEL}, le) "
        f"(rate({contract.QUEUE_WAIT.bucket}[5m])))",
    ),
    (
        "marserve_model:inflight_requests:sum",
        f"sum by (namespace, {MODEL}) ({contract.INFLIGHT_REQUESTS.series})",
    ),
    (
        "marserve_model:queue_depth:sum",
        f"sum by (namespace, {MODEL}) ({contract.QUEUE_DEPTH.series})",
    ),
)
# Helm fills in the thresholds from .Values.monitoring.prometheusRule.
ALERT_EXPRESSIONS: tuple[tuple[str, str], ...] = (
    ("highQueueWait", "marserve_model:queue_wait_seconds:p95_5m > {{ .queueWaitP95Seconds }}"),
    (
        "workerRestarts",
        f"sum by (namespace, {MODEL}) (increase({contract.WORKER_RESTARTS.series}"
        "[{{ .workerRestartsWindow }}])) > {{ .workerRestarts }}",
    ),
    (
        "modelNotReady",
        "(kube_deployment_spec_replicas - kube_deployment_status_replicas_ready > 0) "
        "and on (namespace, deployment) kube_deployment_labels"
        f'{{{_kube_state_label(contract.MANAGED_BY_LABEL)}="{contract.MANAGED_BY}"}}',
    ),
)


def rule_expressions() -> str:
    """Helm definitions the PrometheusRule template includes: its recording rules, and the
    expression of each alert."""
    recording = [{"record": record, "expr": expr} for record, expr in RECORDING_RULES]
    parts = ['{{- define "marserve.recordingRules" -}}', _yaml(recording) + "{{- end -}}"]
    for name, expr in ALERT_EXPRESSIONS:
        parts += [f'{{{{- define "marserve.alertExpression.{name}" -}}}}', expr, "{{- end -}}"]
    return "\n".join(parts)


# --- Grafana dashboard ---------------------------------------------------------------------------

SELECTED = f'{{namespace=~"$namespace", {MODEL}=~"${MODEL}"}}'
RATE = "[$__rate_interval]"


def _legend(*labels: str, suffix: str = "") -> str:
    return " ".join(f"{{{{{label}}}}}" for label in labels) + suffix


def _quantiles(family: contract.MetricFamily) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by ({MODEL}, le) "
            f"(rate({family.bucket}{SELECTED}{RATE})))",
            _legend(MODEL, suffix=f" p{round(q * 100)}"),
        )
        for q in (0.5, 0.95, 0.99)
    ]


# title, description, unit, targets (expression, legend)
PANELS: tuple[tuple[str, str, str, Sequence[tuple[str, str]]], ...] = (
    (
        "Request rate",
        "Inference requests per second by model and response code.",
        "reqps",
        [
            (
                f"sum by ({MODEL}, {CODE}) (rate({contract.REQUESTS.series}{SELECTED}{RATE}))",
                _legend(MODEL, CODE),
            )
        ],
    ),
    (
        "Request latency",
        "p50 / p95 / p99 of the time from arrival to response.",
        "s",
        _quantiles(contract.REQUEST_DURATION),
    ),
    (
        "Queue depth",
        "Requests waiting for a worker, summed over the model's pods.",
        "short",
        [(f"sum by ({MODEL}) ({contract.QUEUE_DEPTH.series}{SELECTED})", _legend(MODEL))],
    ),
    (
        "In-flight requests",
        "Requests queued or running (the autoscaling signal) and the pods serving them.",
        "short",
        [
            (f"sum by ({MODEL}) ({contract.INFLIGHT_REQUESTS.series}{SELECTED})", _legend(MODEL)),
            (
                f"count by ({MODEL}) ({contract.INFLIGHT_REQUESTS.series}{SELECTED})",
                _legend(MODEL, suffix=" pods"),
            ),
        ],
    ),
    (
        "Batch size",
        "Requests per batch sent to a worker: mean and p95.",
        "short",
        [
            (
                f"sum by ({MODEL}) (rate({contract.BATCH_SIZE.sum}{SELECTED}{RATE})) / "
                f"sum by ({MODEL}) (rate({contract.BATCH_SIZE.count}{SELECTED}{RATE}))",
                _legend(MODEL, suffix=" mean"),
            ),
            _quantiles(contract.BATCH_SIZE)[1],
        ],
    ),
    (
        "Queue wait",
        "Time requests wait for a worker: p50 / p95 / p99.",
        "s",
        _quantiles(contract.QUEUE_WAIT),
    ),
    (
        "Worker restarts and recycles",
        "Worker processes restarted after dying (crashes, out-of-memory kills), and workers "
        "replaced on purpose for going over maxWorkerMemoryMB (recycles, not crashes).",
        "short",
        [
            (
                f"sum by ({MODEL}) (increase({contract.WORKER_RESTARTS.series}{SELECTED}{RATE}))",
                _legend(MODEL, suffix=" restarted"),
            ),
            (
                f"sum by ({MODEL}, {REASON}) "
                f"(increase({contract.WORKER_RECYCLES.series}{SELECTED}{RATE}))",
                _legend(MODEL, suffix=f" recycled ({_legend(REASON)})"),
            ),
        ],
    ),
)


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "label": label,
        "includeAll": True,
        "multi": True,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def _panel(index: int, panel: tuple[str, str, str, Sequence[tuple[str, str]]]) -> dict[str, Any]:
    title, description, unit, targets = panel
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "expr": expr,
                "legendFormat": legend,
                "datasource": datasource,
            }
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> str:
    """The per-model dashboard: one row of two panels per signal, filtered by namespace and
    model variables read from the in-flight gauge every worker exports."""
    series = contract.INFLIGHT_REQUESTS.series
    board = {
        "uid": "marserve-models",
        "title": "marserve / models",
        "tags": ["marserve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "editable": True,
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                },
                _variable("namespace", "Namespace", f"label_values({series}, namespace)"),
                _variable(
                    MODEL,
                    "Model",
                    f'label_values({series}{{namespace=~"$namespace"}}, {MODEL})',
                ),
            ]
        },
        "panels": [_panel(index, panel) for index, panel in enumerate(PANELS)],
    }
    return json.dumps(board, indent=2) + "\n"


# --- Template blocks -----------------------------------------------------------------------------

# The operator's settings from the chart's values, by the variable the operator reads.
OPERATOR_ENV_VALUES: Mapping[str, str] = {
    contract.OPERATOR_ENV.worker_image: '{{ include "marserve.workerImage" . | quote }}',
    contract.OPERATOR_ENV.watch_namespaces: '{{ join "," .Values.watchNamespaces | quote }}',
    contract.OPERATOR_ENV.prometheus_url: "{{ .Values.prometheusUrl | quote }}",
    contract.OPERATOR_ENV.intel_gpu_resource: "{{ .Values.intelGpuResource | quote }}",
}


def operator_env() -> str:
    return "\n".join(
        f"- name: {name}\n  value: {value}" for name, value in OPERATOR_ENV_VALUES.items()
    )


def worker_metrics_endpoint() -> str:
    return _yaml([{"port": contract.METRICS_PORT.name, "path": contract.METRICS_PATH}])


def worker_service_selector() -> str:
    return _yaml({contract.MANAGED_BY_LABEL: contract.MANAGED_BY})


def worker_port() -> str:
    return f"{{{{- $inferencePort := {contract.INFERENCE_PORT.number} }}}}"


# file in the chart -> block name -> what goes between its markers
BLOCKS: Mapping[str, Mapping[str, Callable[[], str]]] = {
    "templates/prometheus-adapter-rules.yaml": {
        "adapter-rules": lambda: _yaml(adapter_metric_queries())
    },
    "templates/prometheusrule.yaml": {"rule-expressions": rule_expressions},
    "templates/deployment.yaml": {"operator-env": operator_env},
    "templates/servicemonitor.yaml": {"worker-metrics-endpoint": worker_metrics_endpoint},
    "templates/NOTES.txt": {"worker-port": worker_port},
    "values.yaml": {"worker-service-selector": worker_service_selector},
}
WHOLE_FILES: Mapping[str, Callable[[], str]] = {"files/dashboard.json": dashboard}


def replace_block(text: str, *, name: str, content: str, where: str) -> str:
    """The text with the lines between the block's markers replaced by `content`, indented as
    the opening marker is."""
    lines = text.splitlines(keepends=True)
    begin = [i for i, line in enumerate(lines) if f">>> generated: {name}" in line]
    end = [i for i, line in enumerate(lines) if f"<<< generated: {name}" in line]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise SystemExit(f"{where}: expected one '>>> generated: {name}' ... '<<< ...' pair")
    marker = lines[begin[0]]
    indent = marker[: len(marker) - len(marker.lstrip())]
    body = [f"{indent}{line}\n" if line else "\n" for line in content.rstrip("\n").split("\n")]
    return "".join(lines[: begin[0] + 1] + body + lines[end[0] :])


def generate(chart_dir: Path) -> list[Path]:
    """Rewrites every generated part under chart_dir; returns the files whose text changed."""
    changed = []
    for relative, render in WHOLE_FILES.items():
        changed += _write(chart_dir / relative, render())
    for relative, blocks in BLOCKS.items():
        path = chart_dir / relative
        text = path.read_text()
        for name, render in blocks.items():
            text = replace_block(text, name=name, content=render(), where=str(path))
        changed += _write(path, text)
    return changed


def _write(path: Path, text: str) -> list[Path]:
    if path.exists() and path.read_text() == text:
        return []
    path.write_text(text)
    return [path]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", type=Path, default=CHART_DIR, help="the chart to rewrite")
    args = parser.parse_args(argv)
    for path in generate(args.chart):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
