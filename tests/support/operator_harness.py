"""What operator tests drive: kopf running marserve's handlers in its own thread against the
Kubernetes emulator, the real kubectl pointed at it (both through a kubeconfig file that
KUBECONFIG names), and the issue's example manifest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import Configuration

from marserve_operator import cluster, main
from marserve_operator.settings import OperatorSettings
from support.running_emulator import RunningEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "crds" / "inferencemodel.yaml"
NAMESPACE = "ml"
MODELS = "/apis/serving.marserve.io/v1alpha1/namespaces/ml/inferencemodels"
DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"
SERVICES = "/api/v1/namespaces/ml/services"
PODS = "/api/v1/namespaces/ml/pods"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Short timeouts so a stop, a reconnect or a retried request takes a second, not minutes.
TEST_TIMING = main.Timing(
    watch_server_timeout=20.0,
    watch_client_timeout=30.0,
    connect_timeout=5.0,
    request_timeout=10.0,
    exit_timeout=1.0,
    retry=cluster.RetryPolicy(attempts=6, first_delay=0.05, max_delay=0.5, request_timeout=10.0),
)

EXAMPLE_MANIFEST = """\
apiVersion: serving.marserve.io/v1alpha1
kind: InferenceModel
metadata: {name: resnet, namespace: ml}
spec:
  archive:
    uri: https://models.example.com/resnet-2.0.mar
    sha256: 3b1f0d6c9a4e8b7f2c5d1e0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c
  modelName: resnet
  handler: image_classifier
  batching: {maxBatchSize: 8, maxBatchDelayMs: 5}
  workersPerReplica: 1
  responseTimeoutSeconds: 60
  replicas: 2
  autoscaling: {minReplicas: 1, maxReplicas: 10, metric: inflight, target: 16, engine: hpa}
  accelerator: {type: nvidia, count: 1}
  resources: {requests: {cpu: "2", memory: 4Gi}, limits: {memory: 8Gi}}
  image: ghcr.io/marserve/worker:0.1.0
  nodeSelector: {}
  auth: {tokenSecretRef: {name: resnet-token}}
"""


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float = 20.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> Any:
    """Poll until `check` returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last value: {last!r})")


@contextlib.contextmanager
def kubeconfig_env(path: Path) -> Iterator[None]:
    """Point KUBECONFIG at `path` in this process: for kubectl and child processes, and for the
    in-process operator's login, whose client library reads KUBECONFIG once, at import."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(path))
        patch.setattr(kube_config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        yield


async def connect(kubeconfig: Path, *, retry: cluster.RetryPolicy) -> cluster.Cluster:
    """The operator's API client, configured from a kubeconfig file as its login would."""
    configuration = Configuration()
    await kube_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration
    )
    client = cluster.Cluster(retry=retry)
    await client.configure(configuration)
    return client


class Kubectl:
    """The real kubectl, as a user would run it, with the given kubeconfig (or, with none, the
    current context)."""

    def __init__(self, kubeconfig: Path | None, cache_dir: Path) -> None:
        found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
        self.binary = found or shutil.which("kubectl")
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if self.binary is None:
            pytest.skip("kubectl is not installed (make tools puts it into .venv/bin)")
        # A fresh discovery cache per call: resources appear as CRDs are applied.
        cache = self.cache_dir / str(time.monotonic_ns())
        command = [self.binary, "--cache-dir", str(cache), *args]
        env = dict(os.environ)
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout


class OperatorThread:
    """marserve's operator in its own thread and event loop, logged in to the cluster KUBECONFIG
    names; `stop` always ends the thread."""

    def __init__(self, *, settings: OperatorSettings, timing: main.Timing = TEST_TIMING) -> None:
        self.settings = settings
        self.timing = timing
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> OperatorThread:
        self._stop = threading.Event()
        ready = threading.Event()

        def target() -> None:
            try:
                asyncio.run(
                    main.run(
                        settings=self.settings,
                        timing=self.timing,
                        stop_flag=self._stop,
                        ready_flag=ready,
                    )
                )
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=target, name="marserve-operator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            self.stop()
            raise RuntimeError(f"the operator did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the operator thread did not stop"
        self._thread = None


def start_emulator(directory: Path) -> RunningEmulator:
    """The emulator, a kubeconfig naming it in `directory`, and the namespaces tests use (kopf
    watches only namespaces that exist)."""
    emulator = RunningEmulator().start()
    emulator.write_kubeconfig(directory / "config")
    for name in ("default", NAMESPACE):
        emulator.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
    return emulator


def create_crd(cluster: RunningEmulator) -> None:
    """The InferenceModel CRD, posted as a controller would, for tests that need no kubectl."""
    cluster.request("POST", CRDS, yaml.safe_load(CRD_FILE.read_text()))


def install_crd(cluster: RunningEmulator, kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--validate=false", "-f", str(CRD_FILE))
    wait_for(lambda: cluster.get(MODELS) is not None, what="the InferenceModel resource")


def model_path(name: str) -> str:
    return f"{MODELS}/{name}"


def manifest(name: str = "resnet", **spec_changes: Any) -> str:
    """The issue's example manifest, renamed and with top-level spec fields replaced."""
    data = yaml.safe_load(EXAMPLE_MANIFEST)
    data["metadata"]["name"] = name
    for key, value in spec_changes.items():
        if value is None:
            data["spec"].pop(key, None)
        else:
            data["spec"][key] = value
    return yaml.safe_dump(data)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def report_deployment_ready(cluster: RunningEmulator, name: str, replicas: int) -> None:
    """What the Deployment controller writes once `replicas` pods are up to date and ready."""
    deployment = cluster.get(f"{DEPLOYMENTS}/{name}")
    assert deployment is not None
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    cluster.request("PATCH", f"{DEPLOYMENTS}/{name}/status", {"status": status})
