"""The monitoring pieces the chart ships: rules that promtool accepts and whose every alert and
recording rule has a unit test, adapter rules identical to the operator's queries, and a
dashboard with the panels operators look for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from marserve_operator import resources
from marserve_operator.resources import metrics_queries
from marserve_operator.spec import parse_spec
from support import tools

RULES_TESTS = Path(__file__).with_name("rules_test.yaml")


def _only(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def rules_file(
    all_on_objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    rule = _only(all_on_objects, "PrometheusRule", "marserve")
    path = tmp_path_factory.mktemp("rules") / "marserve-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_promtool_accepts_the_rules(rules_file: Path) -> None:
    result = tools.run([tools.tool("promtool"), "check", "rules", rules_file])
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(rules_file: Path) -> None:
    unit_tests = yaml.safe_load(RULES_TESTS.read_text())
    unit_tests["rule_files"] = [str(rules_file)]
    tests_file = rules_file.with_name("rules_test.yaml")
    tests_file.write_text(yaml.safe_dump(unit_tests))
    result = tools.run([tools.tool("promtool"), "test", "rules", tests_file], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_unit_test(rules_file: Path) -> None:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    tested_alerts = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])}
    firing_alerts = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    tested_records = {case["expr"] for t in tests for case in t.get("promql_expr_test", [])}
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    records = {rule["record"] for rule in rules if "record" in rule}
    assert alerts == tested_alerts == firing_alerts
    assert records == tested_records
    assert {"MarserveHighQueueWait", "MarserveWorkerRestarts", "MarserveModelNotReady"} <= alerts


def test_adapter_rules_are_the_operators_queries(all_on_objects: list[dict[str, Any]]) -> None:
    config_map = _only(all_on_objects, "ConfigMap", "marserve-prometheus-adapter-rules")
    chart_values = yaml.safe_load(config_map["data"]["values.yaml"])
    adapter_config = yaml.safe_load(config_map["data"]["config.yaml"])
    expected = metrics_queries.adapter_metric_queries()
    assert chart_values["rules"]["custom"] == expected
    assert adapter_config["rules"] == expected


def test_dashboard_has_the_panels_operators_look_for(all_on_objects: list[dict[str, Any]]) -> None:
    config_map = _only(all_on_objects, "ConfigMap", "marserve-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["marserve-models.json"])
    expressions = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    )
    latency = "sum by (model, le) (rate(marserve_request_duration_seconds_bucket"
    for needed in (
        "rate(marserve_requests_total",
        f"histogram_quantile(0.5, {latency}",
        f"histogram_quantile(0.95, {latency}",
        f"histogram_quantile(0.99, {latency}",
        "marserve_queue_depth",
        "marserve_inflight_requests",
        "marserve_batch_size",
        "marserve_worker_restarts_total",
        "marserve_worker_recycles_total",
    ):
        assert needed in expressions


def test_worker_service_monitor_selects_the_operators_model_services(
    all_on_objects: list[dict[str, Any]],
) -> None:
    monitor = _only(all_on_objects, "ServiceMonitor", "marserve-workers")
    model = parse_spec(name="resnet", namespace="ml", spec={"archive": {"uri": "https://x/r.mar"}})
    service = resources.service(model)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
