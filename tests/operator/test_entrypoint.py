"""The `marserve-operator` console script as the chart runs it: settings from the environment,
kopf's liveness endpoint, namespaced watching, a clean exit on SIGTERM, and kopf's usual flags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from marserve_operator import main
from marserve_operator.settings import OperatorSettings
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


def test_namespace_flags_override_the_environment() -> None:
    from_env = OperatorSettings(watch_namespaces=("ml",))
    both = main.parse_arguments(["-n", "a", "--namespace", "b", "-n", "a"])
    assert main.watched_settings(from_env, both).watch_namespaces == ("a", "b")
    everywhere = main.watched_settings(from_env, main.parse_arguments(["-A"]))
    assert everywhere.watch_namespaces == () and everywhere.cluster_wide
    assert main.watched_settings(from_env, main.parse_arguments([])) == from_env


@pytest.mark.parametrize(
    "argv",
    [["-n", "ml", "--all-namespaces"], ["--standalone", "--peering", "marserve"]],
    ids=["namespace-and-all", "standalone-and-peering"],
)
def test_contradicting_flags_are_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parse_arguments(argv)
    assert exited.value.code == 2
    assert "not both" in capsys.readouterr().err


def test_flags_are_spelled_as_kopf_run_spells_them() -> None:
    args = main.parse_arguments(
        ["--standalone", "-L", "", "-p", "7", "--debug", "-q", "--log-format", "FULL"]
    )
    assert (args.standalone, args.liveness, args.priority) == (True, "", 7)
    assert (args.debug, args.quiet, args.log_format) == (True, True, "full")
    peered = main.parse_arguments(["-P", "marserve", "--dev", "--no-log-prefix", "-v"])
    assert (peered.peering, peered.dev, peered.log_prefix, peered.verbose) == (
        "marserve",
        True,
        False,
        True,
    )


def test_console_script_watches_the_namespace_its_flags_name(api: RunningEmulator) -> None:
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "MARSERVE_WATCH_NAMESPACES": "other"}
    liveness = f"http://127.0.0.1:{_free_port()}/healthz"
    process = subprocess.Popen(
        [str(SCRIPT), "--standalone", "-n", NAMESPACE, "-L", liveness, "--log-format", "plain"],
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
            "metadata": {"name": "flagged", "namespace": NAMESPACE},
            "spec": {"archive": {"uri": "https://models.example.com/flagged.mar"}},
        }
        api.request("POST", MODELS, model)
        wait_for(lambda: api.get(f"{DEPLOYMENTS}/flagged"), timeout=60, what="the Deployment")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
