"""The built images, run as a cluster runs them: the worker serves an archive from a read-only
mount on a read-only root as user 1000 and drains on SIGTERM; its `marserve extract` does the
init container's job; the operator, in its own container, reconciles a model through a
kubeconfig."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import signal
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from support import models
from support.operator_harness import (
    DEPLOYMENTS,
    MODELS,
    NAMESPACE,
    create_crd,
    start_emulator,
    wait_for,
)
from support.running_emulator import RunningEmulator
from support.serving import free_port, http_status

pytestmark = pytest.mark.image

USER = "1000"
GRACE_SECONDS = 20
HANDLER = """
import time

import torch
from ts.torch_handler.base_handler import BaseHandler


class SlowableMLP(BaseHandler):
    \"\"\"{"x": 8 numbers, "sleep": seconds} in, 4 scores out: the sleep keeps a request in
    flight while the server is told to stop.\"\"\"

    def preprocess(self, data):
        bodies = [row.get("data") or row.get("body") for row in data]
        time.sleep(max(body.get("sleep", 0) for body in bodies))
        return torch.tensor([body["x"] for body in bodies], dtype=torch.float32)

    def postprocess(self, data):
        return data.tolist()
"""
ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.25, 3.0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """slow.mar, made by the real torch-model-archiver, alone in a folder others may read."""
    work = tmp_path_factory.mktemp("archive")
    model_file, weights = models.write_eager(models.make_mlp(), work / "src")
    store = work / "store"
    mar = models.torch_model_archiver(
        model_name="slow",
        handler=models.write_text(work / "src" / "slow_handler.py", HANDLER),
        model_file=model_file,
        serialized_file=weights,
        export_path=store,
    )
    store.chmod(0o755)
    return mar


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def worker(engine: Any, images: dict[str, str], archive: Path) -> Iterator[dict[str, Any]]:
    """The worker image serving the archive's folder, mounted read-only at the model store."""
    name = f"marserve-worker-test-{free_port()}"
    ports = [free_port() for _ in range(3)]
    command = engine.run_command(
        "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{archive.parent}:/mnt/models:ro",
        images["worker"], "serve", "--host", "127.0.0.1",
        "--inference-port", str(ports[0]), "--management-port", str(ports[1]),
        "--metrics-port", str(ports[2]), "--grace-period-seconds", str(GRACE_SECONDS),
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    inference = f"http://127.0.0.1:{ports[0]}"
    try:
        wait_for(
            lambda: process.poll() is not None or http_status(f"{inference}/ping") == 200,
            timeout=180,
            what="the worker container's /ping",
        )
        assert process.poll() is None, process.communicate()[0].decode(errors="replace")
        yield {"name": name, "process": process, "inference": inference}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        subprocess.run(engine("rm", "--force", name), capture_output=True, check=False)


def test_worker_serves_the_archive_as_user_1000_and_drains_on_sigterm(
    engine: Any, worker: dict[str, Any]
) -> None:
    identity = subprocess.run(
        engine("exec", worker["name"], "id", "-u"), capture_output=True, text=True, check=True
    )
    assert identity.stdout.strip() == USER
    probe = engine("exec", worker["name"], "touch", "/opt/marserve/probe")
    writable = subprocess.run(probe, capture_output=True, check=False)
    assert writable.returncode != 0  # the root file system is read-only

    url = f"{worker['inference']}/predictions/slow"
    status, answer = _post(url, {"x": ROW})
    with torch.no_grad():
        expected = models.make_mlp()(torch.tensor([ROW])).tolist()[0]
    assert status == 200
    assert answer == pytest.approx(expected, abs=1e-5)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(_post, url, {"x": ROW, "sleep": 3})
        time.sleep(1)
        stopped_at = time.monotonic()
        worker["process"].send_signal(signal.SIGTERM)
        status, answer = in_flight.result(timeout=60)
    assert status == 200 and answer == pytest.approx(expected, abs=1e-5)
    output, _ = worker["process"].communicate(timeout=GRACE_SECONDS + 10)
    assert worker["process"].returncode == 0, output.decode(errors="replace")
    assert time.monotonic() - stopped_at < GRACE_SECONDS


def test_extract_unpacks_the_archive_into_a_writable_volume(
    engine: Any, images: dict[str, str], archive: Path, tmp_path: Path
) -> None:
    """The init container's command, as the operator writes it, checksum included."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    models_dir.chmod(0o777)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    command = engine.run_command(
        "--rm", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{archive.parent}:/archive:ro",
        "--volume", f"{models_dir}:/mnt/models",
        images["worker"], "extract", f"/archive/{archive.name}", "/mnt/models",
        "--force", "--sha256", sha256,
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(archive) as mar:
        for member in mar.infolist():
            if not member.is_dir():
                assert (models_dir / member.filename).read_bytes() == mar.read(member)
    assert {path.stat().st_uid for path in models_dir.rglob("*")} == {int(USER)}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RunningEmulator]:
    emulator = start_emulator(tmp_path)
    try:
        create_crd(emulator)
        wait_for(lambda: emulator.get(MODELS) is not None, what="the InferenceModel resource")
        yield emulator
    finally:
        emulator.stop()


def test_operator_reconciles_a_model_from_its_container(
    engine: Any, images: dict[str, str], cluster: RunningEmulator
) -> None:
    assert cluster.kubeconfig is not None
    cluster.kubeconfig.chmod(0o644)
    name = f"marserve-operator-test-{free_port()}"
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    command = engine.run_command(
        "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{cluster.kubeconfig}:/kube/config:ro",
        "--env", "KUBECONFIG=/kube/config", "--env", f"MARSERVE_WATCH_NAMESPACES={NAMESPACE}",
        images["operator"], "--liveness", liveness, "--log-format", "plain",
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_status(liveness) == 200, timeout=120, what="the liveness endpoint")
        model = {
            "apiVersion": "serving.marserve.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": "boxed", "namespace": NAMESPACE},
            "spec": {"archive": {"uri": "https://models.example.com/boxed.mar"}},
        }
        cluster.request("POST", MODELS, model)
        deployment = wait_for(
            lambda: cluster.get(f"{DEPLOYMENTS}/boxed"), timeout=60, what="the Deployment"
        )
        assert deployment["metadata"]["ownerReferences"][0]["name"] == "boxed"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        subprocess.run(engine("rm", "--force", name), capture_output=True, check=False)
    assert process.returncode == 0, output.decode(errors="replace")
