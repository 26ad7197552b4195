"""Model loading by format: every loader gives the outputs of the model run directly in torch."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from marserve.handlers.base_handler import BaseHandler
from marserve.handlers.labels import load_label_mapping, map_class_to_label
from marserve.loading import format_detection, loaders
from marserve.loading.format_detection import ModelFormat, ModelLoadError
from support import handler_fixtures, models

BATCH = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))


def _serve(model_dir: Path, **manifest: str) -> BaseHandler:
    handler = BaseHandler()
    handler.initialize(handler_fixtures.make_context(model_dir, **manifest))
    return handler


def _predict(handler: BaseHandler, batch: torch.Tensor) -> torch.Tensor:
    context = handler_fixtures.with_headers(handler.context, [{}] * len(batch))  # type: ignore[arg-type]
    return torch.tensor(handler.handle(batch.tolist(), context))


def _expected(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch)


def test_eager_model_file_and_state_dict(tmp_path: Path) -> None:
    model = models.make_mlp(seed=3)
    models.write_eager(model, tmp_path)
    handler = _serve(tmp_path, model_file="model.py", serialized_file="model.pth")
    assert handler.model_format is ModelFormat.EAGER
    assert not handler.model.training
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))


def test_torchscript(tmp_path: Path) -> None:
    model = models.make_mlp(seed=4)
    models.write_torchscript(model, tmp_path)
    handler = _serve(tmp_path, serialized_file="model.pt")
    assert isinstance(handler.model, torch.jit.ScriptModule)
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))


def test_onnx_session_is_callable_and_keeps_the_runtime_api(tmp_path: Path) -> None:
    model = models.make_mlp(seed=5)
    models.write_onnx(model, tmp_path)
    handler = _serve(tmp_path, serialized_file="model.onnx")
    assert handler.model_format is ModelFormat.ONNX
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))
    (raw,) = handler.model.run(None, {"input": BATCH.numpy()})
    torch.testing.assert_close(torch.from_numpy(raw), _expected(model, BATCH))


def test_exported_program_pt2(tmp_path: Path) -> None:
    model = models.make_mlp(seed=6)
    models.write_exported_program(model, tmp_path, BATCH[:2])
    handler = _serve(tmp_path, serialized_file="model.pt2")
    assert handler.model_format is ModelFormat.PT2_PACKAGE
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))


@pytest.mark.soak
def test_aoti_package_pt2_really_compiled(tmp_path: Path) -> None:
    """A real AOTInductor build: about a minute of g++ on 2 busy cores with a cold cache."""
    model = models.make_mlp(seed=7)
    models.write_aoti_package(model, tmp_path, BATCH[:2])
    handler = _serve(tmp_path, serialized_file="model.pt2")
    assert not isinstance(handler.model, torch.nn.Module), "compiled code, not a module"
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))


@pytest.mark.soak
def test_aot_shared_library_with_yaml_switch(tmp_path: Path) -> None:
    model = models.make_mlp(seed=8)
    models.write_aot_shared_library(model, tmp_path, BATCH[:2])
    handler = BaseHandler()
    context = handler_fixtures.make_context(
        tmp_path,
        serialized_file="model.so",
        model_yaml_config={"pt2": {"export": {"aot_compile": True}}},
    )
    handler.initialize(context)
    assert handler.model_format is ModelFormat.AOT_SHARED_LIBRARY
    torch.testing.assert_close(_predict(handler, BATCH), _expected(model, BATCH))


def _fake_archive(path: Path, entry: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(entry, b"")
    return path


def test_aoti_package_loads_with_the_package_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatch only (the real build is the soak test above): the GPU index reaches the loader."""
    package = _fake_archive(tmp_path / "model.pt2", "model/data/aotinductor/model/k.wrapper.so")
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(
        torch._inductor,
        "aoti_load_package",
        lambda path, device_index=-1: calls.append((path, device_index)) or "runner",
    )
    assert loaders.load_pt2_package(package, torch.device("cpu")) == "runner"
    assert loaders.load_pt2_package(package, torch.device("cuda:2")) == "runner"
    assert calls == [(str(package), -1), (str(package), 2)]


def test_shared_library_loads_with_the_legacy_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatch only (the real build is a soak test): the YAML switch routes `.so` files."""
    (tmp_path / "model.so").write_bytes(b"\x7fELF")
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        torch._export,
        "aot_load",
        lambda path, device: calls.append((path, device)) or (lambda x: x),
    )
    handler = BaseHandler()
    handler.initialize(
        handler_fixtures.make_context(
            tmp_path,
            serialized_file="model.so",
            model_yaml_config={"pt2": {"export": {"aot_compile": True}}},
        )
    )
    assert handler.model_format is ModelFormat.AOT_SHARED_LIBRARY
    assert calls == [(str(tmp_path / "model.so"), "cpu")]


@pytest.mark.parametrize(
    ("serialized_file", "model_file", "yaml", "expected"),
    [
        ("model.pth", "model.py", {}, ModelFormat.EAGER),
        ("model.pt", "model.py", {}, ModelFormat.EAGER),
        (None, "model.py", {}, ModelFormat.EAGER),
        ("model.pt", None, {}, ModelFormat.TORCHSCRIPT),
        ("model.onnx", None, {}, ModelFormat.ONNX),
        ("model.pt2", None, {}, ModelFormat.PT2_PACKAGE),
        (
            "model.so",
            None,
            {"pt2": {"export": {"aot_compile": True}}},
            ModelFormat.AOT_SHARED_LIBRARY,
        ),
    ],
)
def test_format_is_chosen_in_torchserve_order(
    serialized_file: str | None,
    model_file: str | None,
    yaml: dict[str, object],
    expected: ModelFormat,
) -> None:
    chosen = format_detection.detect_format(
        serialized_file=serialized_file, model_file=model_file, model_yaml_config=yaml
    )
    assert chosen is expected


@pytest.mark.parametrize(
    "yaml",
    [{}, {"pt2": {"export": {"aot_compile": False}}}, {"pt2": {"compile": {"enable": True}}}],
)
def test_shared_library_needs_the_aot_compile_switch(yaml: dict[str, object]) -> None:
    with pytest.raises(ModelLoadError, match=r"model\.so .*aot_compile: true"):
        format_detection.detect_format(
            serialized_file="model.so", model_file=None, model_yaml_config=yaml
        )


@pytest.mark.parametrize("serialized_file", ["weights.bin", "model.pth", None])
def test_unknown_file_names_it_and_the_supported_formats(serialized_file: str | None) -> None:
    with pytest.raises(ModelLoadError) as caught:
        format_detection.detect_format(
            serialized_file=serialized_file, model_file=None, model_yaml_config={}
        )
    message = str(caught.value)
    assert (serialized_file or "no serializedFile") in message
    for supported in ("eager", "TorchScript (.pt)", "ONNX (.onnx)", ".so", ".pt2"):
        assert supported in message


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model file net\.py .* missing"):
        _serve(tmp_path, model_file="net.py")


def test_missing_serialized_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"serialized file model\.pt .* missing"):
        _serve(tmp_path, serialized_file="model.pt")


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import torch\nVALUE = 1\n", "none"),
        (
            "import torch\nclass A(torch.nn.Linear):\n    pass\n"
            "class B(torch.nn.ReLU):\n    pass\n",
            "A, B",
        ),
    ],
)
def test_model_file_must_define_exactly_one_module_class(
    tmp_path: Path, source: str, found: str
) -> None:
    models.write_text(tmp_path / "net.py", source)
    with pytest.raises(ModelLoadError, match=rf"net\.py must define exactly one .*found {found}$"):
        _serve(tmp_path, model_file="net.py")


def test_model_file_may_import_other_classes(tmp_path: Path) -> None:
    """Imported classes (torch.nn.Linear ...) and non-module helpers do not count."""
    source = (Path(models.__file__).with_name("tiny_mlp.py")).read_text()
    models.write_text(tmp_path / "net.py", source + "\nclass Settings:\n    pass\n")
    handler = _serve(tmp_path, model_file="net.py")
    assert type(handler.model).__name__ == "TinyMLP"


def test_whole_pickled_model_is_refused_with_a_reason(tmp_path: Path) -> None:
    model = models.make_mlp()
    models.write_eager(model, tmp_path)
    torch.save(model, tmp_path / "model.pth")
    with pytest.raises(ModelLoadError, match=r"model\.pth is not a state_dict"):
        _serve(tmp_path, model_file="model.py", serialized_file="model.pth")


def test_corrupt_pt2_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.pt2").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"model\.pt2 is not a \.pt2 package"):
        _serve(tmp_path, serialized_file="model.pt2")


def test_index_to_name_labels_the_outputs(tmp_path: Path) -> None:
    models.write_torchscript(models.make_mlp(), tmp_path)
    models.write_json(
        tmp_path / "index_to_name.json",
        {"0": ["n01", "cat"], "1": "dog", "2": ["bird"], "3": ["n04", "fish"]},
    )
    handler = _serve(tmp_path, serialized_file="model.pt")
    assert handler.mapping == {"0": "cat", "1": "dog", "2": "bird", "3": "fish"}


def test_label_mapping_shapes(tmp_path: Path) -> None:
    legacy = models.write_json(tmp_path / "legacy.json", {"object_type_names": ["bg", "person"]})
    assert load_label_mapping(legacy) == {"0": "bg", "1": "person"}
    assert load_label_mapping(tmp_path / "absent.json") is None
    bad = models.write_json(tmp_path / "list.json", ["a", "b"])
    with pytest.raises(ValueError, match=r"list\.json must hold a JSON object"):
        load_label_mapping(bad)
    probs = [[0.7, 0.2], [0.6, 0.3]]
    assert map_class_to_label(probs, {"0": "a", "1": "b"}, [[0, 1], [1, 7]]) == [
        {"a": 0.7, "b": 0.2},
        {"b": 0.6, "7": 0.3},
    ]
    assert map_class_to_label(probs) == [{"0": 0.7, "1": 0.2}, {"0": 0.6, "1": 0.3}]


def test_eager_model_dir_can_move(tmp_path: Path) -> None:
    """The model class is imported from the file path, not from a stale module of that name."""
    first, second = tmp_path / "a", tmp_path / "b"
    models.write_eager(models.make_mlp(seed=1), first)
    shutil.copytree(first, second)
    models.write_text(second / "model.py", (second / "model.py").read_text().replace("16", "12"))
    torch.save(_twelve_wide_state(), second / "model.pth")
    assert _serve(first, model_file="model.py", serialized_file="model.pth").model
    handler = _serve(second, model_file="model.py", serialized_file="model.pth")
    assert handler.model.layers[0].out_features == 12


def _twelve_wide_state() -> dict[str, torch.Tensor]:
    return {
        "layers.0.weight": torch.zeros(12, 8),
        "layers.0.bias": torch.zeros(12),
        "layers.2.weight": torch.zeros(4, 12),
        "layers.2.bias": torch.zeros(4),
    }


def test_model_file_never_replaces_an_unrelated_module(tmp_path: Path) -> None:
    """A model file called json.py must not swap out the standard library's json."""
    import json

    source = Path(models.__file__).with_name("tiny_mlp.py").read_text()
    models.write_text(tmp_path / "json.py", source)
    handler = _serve(tmp_path, model_file="json.py")
    assert type(handler.model).__name__ == "TinyMLP"
    assert sys.modules["json"] is json


def test_model_file_leaves_global_module_names_alone(tmp_path: Path) -> None:
    models.write_eager(models.make_mlp(), tmp_path)
    _serve(tmp_path, model_file="model.py", serialized_file="model.pth")
    loaded = sys.modules.get("model")
    assert loaded is None or getattr(loaded, "__file__", None) != str(tmp_path / "model.py")


def test_model_module_the_handler_imported_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that did `from model import TinyMLP` gets instances of that very class."""
    models.write_eager(models.make_mlp(), tmp_path)
    spec = importlib.util.spec_from_file_location("model", tmp_path / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "model", module)
    handler = _serve(tmp_path, model_file="model.py", serialized_file="model.pth")
    assert type(handler.model) is module.TinyMLP


def test_state_dict_named_pt_gets_a_hint(tmp_path: Path) -> None:
    torch.save(models.make_mlp().state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match=r"model\.pt was saved with torch\.save.*--model-file"):
        _serve(tmp_path, serialized_file="model.pt")


def test_corrupt_torchscript_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"model\.pt is not a TorchScript archive"):
        _serve(tmp_path, serialized_file="model.pt")


def test_corrupt_onnx_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"model\.onnx is not an ONNX model"):
        _serve(tmp_path, serialized_file="model.onnx")
