"""The `marserve-operator` console script as the chart runs it: settings from the environment,
kopf's liveness endpoint, namespaced watching, a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.operator_harness import DEPLOYMENTS, MODELS, NAMESPACE, wait_for
from support.running_emulator import RunningEmulator

SCRIPT = Path(sys.executable).parent / "marserve-operator"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_console_script_serves_liveness_reconciles_and_stops_on_sigterm(
    api: RunningEmulator,
) -> None:
    liveness = f"http://127.0.0.1:{_free_port()}/healthz"
    env = {
        **os.environ,
        "KUBECONFIG": str(api.kubeconfig),
        "MARSERVE_WATCH_NAMESPACES": NAMESPACE,
    }
    process = subprocess.Popen(
        [str(SCRIPT), "--liveness", liveness, "--log-format", "plain"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _healthy(liveness), timeout=60, what="the liveness endpoint")
        model = {
            "apiVersion": "serving.marserve.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": "cli", "namespace": NAMESPACE},
            "spec": {"archive": {"uri": "https://models.example.com/cli.mar"}},
        }
        api.request("POST", MODELS, model)
        wait_for(lambda: api.get(f"{DEPLOYMENTS}/cli"), timeout=60, what="the Deployment")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


def test_console_script_refuses_bad_settings_with_one_line() -> None:
    env = {**os.environ, "MARSERVE_PRE_STOP_SECONDS": "-1"}
    result = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "MARSERVE_PRE_STOP_SECONDS" in result.stderr


def test_console_script_without_any_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    env.update(KUBECONFIG=str(tmp_path / "missing"))
    result = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("marserve-operator: no Kubernetes API to talk to")
    assert result.stderr.count("\n") == 1
