"""Device choice in TorchServe's order, with hardware availability patched (no GPU here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from marserve.handlers.base_handler import BaseHandler
from marserve.loading import cpu
from marserve.loading.device import enable_tensor_cores, map_location, select_device
from marserve.loading.onnx_session import onnx_providers, open_onnx_session
from support import handler_fixtures, models

IPEX_ON = {"TS_IPEX_GPU_ENABLE": "true"}


@pytest.fixture
def available(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Switches for each accelerator; all off until a test turns one on."""
    switches = {"cuda": False, "xpu": False, "mps": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: switches["cuda"])
    monkeypatch.setattr(torch.xpu, "is_available", lambda: switches["xpu"])
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: switches["mps"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device=None: (7, 5))
    return switches


@pytest.fixture
def fake_xla(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes `torch_xla.core.xla_model` importable, answering a `meta` device for XLA."""
    xla_model = types.ModuleType("torch_xla.core.xla_model")
    xla_model.xla_device = lambda: torch.device("meta")  # type: ignore[attr-defined]
    for name in ("torch_xla", "torch_xla.core"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torch_xla.core.xla_model", xla_model)


def test_cpu_when_nothing_is_available(available: dict[str, bool]) -> None:
    assert select_device(None, environ={}) == torch.device("cpu")
    assert select_device(0, environ=IPEX_ON) == torch.device("cpu")


def test_cuda_with_the_assigned_gpu(available: dict[str, bool]) -> None:
    available.update(cuda=True, xpu=True, mps=True)
    assert select_device(3, environ=IPEX_ON) == torch.device("cuda:3")


def test_gpus_need_a_gpu_id(available: dict[str, bool]) -> None:
    available.update(cuda=True, xpu=True, mps=True)
    assert select_device(None, environ=IPEX_ON) == torch.device("cpu")


def test_xpu_only_when_enabled(available: dict[str, bool]) -> None:
    available.update(xpu=True)
    assert select_device(1, environ=IPEX_ON) == torch.device("xpu:1")
    assert select_device(1, environ={}) == torch.device("cpu")
    assert select_device(1, environ={"TS_IPEX_GPU_ENABLE": "1"}) == torch.device("cpu")


def test_xpu_before_mps(available: dict[str, bool]) -> None:
    available.update(xpu=True, mps=True)
    assert select_device(2, environ=IPEX_ON) == torch.device("xpu:2")
    assert select_device(2, environ={}) == torch.device("mps")


def test_xla_before_cpu_but_after_gpus(available: dict[str, bool], fake_xla: None) -> None:
    assert select_device(None, environ={}) == torch.device("meta")
    available.update(mps=True)
    assert select_device(0, environ={}) == torch.device("mps")


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cuda:1", "cuda"), ("cpu", "cpu"), ("mps", "mps"), ("xpu:0", "xpu"), ("xla", None)],
)
def test_map_location(device: str, expected: str | None) -> None:
    assert map_location(torch.device(device)) == expected


@pytest.mark.parametrize(
    ("device", "providers"),
    [
        ("cuda:2", [("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]),
        ("cuda", [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
        ("cpu", ["CPUExecutionProvider"]),
        ("mps", ["CPUExecutionProvider"]),
    ],
)
def test_onnx_providers_follow_the_device(device: str, providers: list[object]) -> None:
    assert onnx_providers(torch.device(device)) == providers


def test_handler_on_a_gpu_asks_onnx_runtime_for_that_gpu(
    tmp_path: Path, available: dict[str, bool]
) -> None:
    available.update(cuda=True)
    models.write_onnx(models.make_mlp(), tmp_path)
    handler = BaseHandler()
    handler.initialize(
        handler_fixtures.make_context(tmp_path, serialized_file="model.onnx", gpu_id=1)
    )
    assert handler.device == torch.device("cuda:1")
    assert handler.map_location == "cuda"
    assert handler.model.requested_providers[0] == ("CUDAExecutionProvider", {"device_id": 1})


def test_handler_on_cpu_asks_onnx_runtime_for_cpu(
    tmp_path: Path, available: dict[str, bool]
) -> None:
    models.write_onnx(models.make_mlp(), tmp_path)
    handler = BaseHandler()
    handler.initialize(
        handler_fixtures.make_context(tmp_path, serialized_file="model.onnx", gpu_id=1)
    )
    assert handler.device == torch.device("cpu")
    assert handler.model.requested_providers == ["CPUExecutionProvider"]
    assert handler.model.get_providers() == ["CPUExecutionProvider"]


def _limit_cgroup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, v2: str = "", v1: str = ""
) -> None:
    v2_file, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    if v2:
        v2_file.write_text(v2)
    if v1:
        quota.write_text(v1)
        period.write_text("100000\n")
    monkeypatch.setattr(cpu, "CGROUP_V2_CPU_MAX", v2_file)
    monkeypatch.setattr(cpu, "CGROUP_V1_QUOTA", quota)
    monkeypatch.setattr(cpu, "CGROUP_V1_PERIOD", period)


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("50000 100000\n", "", 1),
        ("150000 100000\n", "", 2),
        ("", "50000\n", 1),
        ("", "150000\n", 2),
        ("max 100000\n", "50000\n", 1),
        ("", "-1\n", None),
        ("", "", None),
        ("garbage\n", "", None),
    ],
)
def test_cpu_limit_from_cgroups(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, v2: str, v1: str, expected: int | None
) -> None:
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda _pid: set(range(8)))
    _limit_cgroup(monkeypatch, tmp_path, v2=v2, v1=v1)
    assert cpu.available_cpus() == (8 if expected is None else expected)


def test_limit_never_exceeds_the_cpus_we_may_run_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda _pid: {0, 1})
    _limit_cgroup(monkeypatch, tmp_path, v2="1600000 100000\n")
    assert cpu.available_cpus() == 2


def test_onnx_threads_follow_the_cpu_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda _pid: set(range(8)))
    _limit_cgroup(monkeypatch, tmp_path, v2="300000 100000\n")
    session = open_onnx_session(models.write_onnx(models.make_mlp(), tmp_path), torch.device("cpu"))
    assert session.get_session_options().intra_op_num_threads == 3


@pytest.mark.parametrize(("capability", "precision"), [((8, 0), "high"), ((7, 5), "highest")])
def test_tensor_cores_on_ampere_and_newer(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], precision: str
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device: capability)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        enable_tensor_cores(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        enable_tensor_cores(torch.device("cuda:0"))
        assert torch.get_float32_matmul_precision() == precision
    finally:
        torch.set_float32_matmul_precision(previous)
