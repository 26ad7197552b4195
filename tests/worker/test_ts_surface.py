"""The public `ts.*` surface a TorchServe 0.12 handler or its tests touch, name by name.

`SURFACE` lists what TorchServe 0.12's handler-facing modules export; `DECLINED` what marserve
does not offer, each of which must fail with an ImportError saying why.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib
import importlib.util
import logging
import uuid
import warnings
from pathlib import Path

import pytest
import torch

from marserve import compat
from marserve.compat.metrics_store import MetricsStore
from marserve.handler_metrics import Dimension
from marserve.handlers import backends
from support import models

SURFACE: dict[str, list[str]] = {
    "ts": ["__version__"],
    "ts.context": ["Context", "RequestProcessor"],
    "ts.service": ["Service", "emit_metrics", "PREDICTION_METRIC"],
    "ts.model_loader": ["ModelLoaderFactory", "ModelLoader", "TsModelLoader"],
    "ts.utils.util": [
        "PT2Backend",
        "CLEANUP_REGEX",
        "list_classes_from_module",
        "check_valid_pt2_backend",
        "load_label_mapping",
        "map_class_to_label",
        "get_yaml_config",
        "PredictionException",
        "deprecated",
    ],
    "ts.torch_handler.base_handler": [
        "BaseHandler",
        "PROFILER_AVAILABLE",
        "XLA_AVAILABLE",
        "PT2_AVAILABLE",
        "PT230_AVAILABLE",
        "IPEX_AVAILABLE",
        "ONNX_AVAILABLE",
        "setup_ort_session",
    ],
    "ts.torch_handler.vision_handler": ["VisionHandler"],
    "ts.torch_handler.image_classifier": ["ImageClassifier"],
    "ts.torch_handler.image_segmenter": ["ImageSegmenter"],
    "ts.torch_handler.object_detector": ["ObjectDetector"],
    "ts.torch_handler.request_envelope.base": ["BaseEnvelope"],
    "ts.torch_handler.request_envelope.body": ["BodyEnvelope"],
    "ts.torch_handler.request_envelope.json": ["JSONEnvelope"],
    "ts.torch_handler.request_envelope.kserve": ["KServeEnvelope"],
    "ts.torch_handler.request_envelope.kservev2": ["KServev2Envelope"],
    "ts.torch_handler.unit_tests.test_utils.mock_context": ["MockContext"],
    "ts.handler_utils.utils": ["import_class", "send_intermediate_predict_response"],
    "ts.handler_utils.timer": ["timed"],
    "ts.protocol.otf_message_handler": ["send_intermediate_predict_response"],
    "ts.metrics.dimension": ["Dimension"],
    "ts.metrics.metric_type_enum": ["MetricTypes"],
    "ts.metrics.metric_cache_errors": ["MetricsCacheValueError"],
    "ts.metrics.metric": ["Metric", "MetricUnit"],
    "ts.metrics.unit": ["Units"],
    "ts.metrics.metrics_store": ["MetricsStore"],
}

DECLINED: dict[str, str] = {
    "ts.handler_utils.micro_batching": "micro-batching thread pools",
    "ts.torch_handler.text_classifier": "torchtext",
    "ts.torch_handler.vllm_handler": "vLLM",
    "ts.torch_handler.distributed.base_pippy_handler": "torchrun",
    "ts.torch_handler.dali_image_classifier": "DALI",
    "ts.metrics.metric_cache_yaml_impl": "context.metrics",
    "ts.utils.hf_utils": "Hugging Face",
    "ts.model_service_worker": "marserve serve",
}


@pytest.fixture(autouse=True)
def aliases() -> None:
    assert compat.install()


@pytest.mark.parametrize("module_name", sorted(SURFACE))
def test_every_public_name_imports(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in SURFACE[module_name] if not hasattr(module, name)]
    assert missing == [], f"{module_name} lacks {missing}"


@pytest.mark.parametrize(("module_name", "reason"), sorted(DECLINED.items()))
def test_declined_modules_say_why(module_name: str, reason: str) -> None:
    with pytest.raises(ImportError, match="is not provided by marserve") as raised:
        importlib.import_module(module_name)
    assert reason in str(raised.value)


def test_backend_flags_are_this_process_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    from ts.torch_handler import base_handler

    assert base_handler.ONNX_AVAILABLE is (importlib.util.find_spec("onnxruntime") is not None)
    assert base_handler.XLA_AVAILABLE is (importlib.util.find_spec("torch_xla") is not None)
    assert base_handler.PROFILER_AVAILABLE and base_handler.PT2_AVAILABLE
    assert base_handler.PT230_AVAILABLE
    assert base_handler.IPEX_AVAILABLE is False, "IPEX counts only when TS_IPEX_ENABLE=true"
    with pytest.raises(AttributeError, match="NO_SUCH_FLAG"):
        _ = base_handler.NO_SUCH_FLAG


def test_ipex_flag_needs_both_the_switch_and_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.IPEX_ENV, "true")
    installed = importlib.util.find_spec("intel_extension_for_pytorch") is not None
    assert backends.PROBES["IPEX_AVAILABLE"]() is installed


def test_setup_ort_session_runs_an_onnx_model(tmp_path: Path) -> None:
    from ts.torch_handler.base_handler import setup_ort_session

    model = models.make_mlp(seed=3)
    path = models.write_onnx(model, tmp_path)
    session = setup_ort_session(str(path), "cpu")
    assert session.get_providers() == ["CPUExecutionProvider"]
    rows = torch.rand(2, 8)
    (output,) = session.run(None, {session.get_inputs()[0].name: rows.numpy()})
    torch.testing.assert_close(torch.from_numpy(output), model(rows).detach())


def test_metrics_store_keeps_torchserve_metrics(caplog: pytest.LogCaptureFixture) -> None:
    store = MetricsStore({0: "a", 1: "b"}, "mnist")
    store.add_time("HandlerTime", 1.5, None, "ms")
    store.add_counter("Hits", 1, idx=1, dimensions=[Dimension("Route", "x")])
    store.add_size("Bytes", 3, unit="kB")
    store.add_percent("Load", 50, idx=0)
    store.add_error("Oops", 1)
    assert [(m.name, m.unit, m.request_id) for m in store.store] == [
        ("HandlerTime", "Milliseconds", "a,b"),
        ("Hits", "Count", "b"),
        ("Bytes", "Kilobytes", "a,b"),
        ("Load", "Percent", "a"),
        ("Oops", "unit", None),
    ]
    assert [str(d) for d in store.store[1].dimensions] == [
        "Route:x",
        "ModelName:mnist",
        "Level:Model",
    ]
    assert [str(d) for d in store.store[4].dimensions] == ["Level:Error"]
    with caplog.at_level(logging.INFO):
        store.add_counter("Hits", 4, idx=1, dimensions=[Dimension("Route", "x")])
    assert len(store.store) == 5, "an update reuses the metric"
    assert store.store[1].value == 1, "TorchServe logs updates and keeps the first value"
    assert "[METRICS]Hits.Count:4|#Route:x,ModelName:mnist,Level:Model" in caplog.text
    assert str(store.store[1]).startswith("Hits.Count:1|#Route:x")
    assert store.store[1].to_dict()["RequestId"] == "b"


def test_metrics_store_refuses_what_torchserve_refuses() -> None:
    store = MetricsStore(uuid.uuid4(), "m")
    with pytest.raises(ValueError, match="unit"):
        store.add_time("T", 1, unit="min")
    with pytest.raises(ValueError, match="unit"):
        store.add_size("S", 1, unit="TB")
    with pytest.raises(ValueError, match="list of dimensions"):
        store.add_metric("M", 1, "ms", dimensions=Dimension("a", "b"))  # type: ignore[arg-type]
    store.add_time("T", 1)
    assert store.store[0].request_id == str(store.request_ids), "a single id is used as is"


def test_import_class_finds_classes_as_torchserve_does() -> None:
    from ts.handler_utils.utils import import_class

    assert import_class("collections.OrderedDict") is collections.OrderedDict
    assert import_class("OrderedDict", module_prefix="collections") is collections.OrderedDict
    assert import_class("abc.Mapping", module_prefix="collections") is collections.abc.Mapping
    with pytest.raises(ImportError, match="class name is not defined"):
        import_class("")
    with pytest.raises(ImportError, match="module name is not defined"):
        import_class("OrderedDict")
    with pytest.raises(ImportError, match="class:Nope not found in module:collections"):
        import_class("collections.Nope")


def test_deprecated_warns_with_the_replacement() -> None:
    from ts.utils.util import deprecated

    @deprecated("0.13", replacement="new_call")
    def old_call(value: int) -> int:
        return value + 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert old_call(1) == 2
    assert [w.category for w in caught] == [PendingDeprecationWarning]
    assert str(caught[0].message) == "old_call is deprecated in 0.13 and moved to new_call"
    assert old_call.__name__ == "old_call"


def test_pt2_backends_are_torchserve_s(caplog: pytest.LogCaptureFixture) -> None:
    from ts.utils.util import PT2Backend, check_valid_pt2_backend

    assert PT2Backend.INDUCTOR == "inductor" and len(PT2Backend) == 14
    assert check_valid_pt2_backend("openvino")
    assert not check_valid_pt2_backend("magic")
    assert "magic is not a supported backend" in caplog.text


def test_model_loader_factory_gives_the_loader() -> None:
    from ts.model_loader import ModelLoaderFactory, TsModelLoader

    assert isinstance(ModelLoaderFactory.get_model_loader(), TsModelLoader)


def test_emit_metrics_logs_each_metric(caplog: pytest.LogCaptureFixture) -> None:
    from ts.service import emit_metrics

    store = MetricsStore({0: "r"}, "m")
    store.add_counter("Hits", 2, idx=0)
    with caplog.at_level(logging.INFO):
        emit_metrics(store.store)
        emit_metrics(None)
    assert caplog.messages == [f"[METRICS]{store.store[0]}"]
