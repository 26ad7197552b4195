"""The Service in front of a model's pods and the ServiceMonitor that scrapes them."""

from __future__ import annotations

from typing import Any

from marserve.contract import GRPC_INFERENCE_PORT, INFERENCE_PORT, METRICS_PATH, METRICS_PORT, Port
from marserve_operator.resources.metadata import object_meta, selector
from marserve_operator.spec import ModelSpec


def service(model: ModelSpec) -> dict[str, Any]:
    """A ClusterIP Service for inference (http, and grpc when the spec enables it) and metrics;
    management, HTTP or gRPC, stays pod-local.

    Scrape annotations live on the pods only: annotating the Service too would make Prometheus
    setups that follow both pod and endpoint annotations scrape each pod twice, doubling the
    summed autoscaling signal.
    """
    ports = [_service_port(port) for port in (INFERENCE_PORT, METRICS_PORT)]
    if model.grpc.enabled:
        # appProtocol lets meshes and gateways route it as HTTP/2 gRPC.
        ports.append(_service_port(GRPC_INFERENCE_PORT) | {"appProtocol": "grpc"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(model),
        "spec": {"type": "ClusterIP", "selector": selector(model), "ports": ports},
    }


def _service_port(port: Port) -> dict[str, Any]:
    return {"name": port.name, "port": port.number, "targetPort": port.name, "protocol": "TCP"}


def service_monitor(model: ModelSpec) -> dict[str, Any]:
    """A prometheus-operator ServiceMonitor for the metrics port of the model's Service."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": object_meta(model),
        "spec": {
            "selector": {"matchLabels": selector(model)},
            "namespaceSelector": {"matchNames": [model.namespace]},
            "endpoints": [{"port": METRICS_PORT.name, "path": METRICS_PATH, "interval": "15s"}],
        },
    }
