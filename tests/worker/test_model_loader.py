"""Handler resolution in TorchServe's order, with errors that name the module and the problem."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from marserve.manifest import ManifestError
from marserve.model_loader import (
    HandlerLoadError,
    ModelLoader,
    TsModelLoader,
    load_service,
    resolve_handler,
)


def answers(service: Any, batch: list[Any]) -> list[Any]:
    """Decoded answers; strings come back as text, everything else as JSON."""
    results = service.predict(batch)
    assert all(result.status == 200 for result in results), results
    return [
        json.loads(r.body) if r.content_type == "application/json" else r.body.decode()
        for r in results
    ]


def test_class_handler_is_instantiated_and_initialised(
    make_model_dir: Any, make_batch: Any
) -> None:
    model_dir = make_model_dir(
        """
        import helper_module

        class NotAHandler:
            pass

        class Doubler:
            def initialize(self, context):
                self.factor = context.model_yaml_config["factor"]
                self.gpu = context.system_properties["gpu_id"]

            def handle(self, data, context):
                return [helper_module.scale(row["body"], self.factor) for row in data]
        """,
        config="factor: 2\n",
        files={"helper_module.py": "def scale(x, f):\n    return x * f\n"},
    )
    service = load_service(model_dir, batch_size=4)
    assert answers(service, make_batch([1, 5])) == [2, 10]
    assert service.context.model_name == "tiny"
    assert service.context.system_properties["batch_size"] == 4


def test_module_function_entry_is_initialised_with_none(
    make_model_dir: Any, make_batch: Any
) -> None:
    model_dir = make_model_dir(
        """
        state = {}

        def serve(data, context):
            if data is None:
                state["initialised_for"] = context.model_name
                return None
            return [state["initialised_for"] for _ in data]
        """,
        handler="handler.py:serve",
    )
    assert answers(load_service(model_dir), make_batch([0, 0])) == ["tiny", "tiny"]


def test_module_level_handle_function_is_found_without_a_name(
    make_model_dir: Any, make_batch: Any
) -> None:
    model_dir = make_model_dir(
        """
        def handle(data, context):
            return None if data is None else [len(data)] * len(data)
        """,
    )
    assert answers(load_service(model_dir), make_batch([0, 0, 0])) == [3, 3, 3]


def test_subclass_is_chosen_over_its_base_in_the_same_module(
    make_model_dir: Any, make_batch: Any
) -> None:
    model_dir = make_model_dir(
        """
        class Base:
            def handle(self, data, context):
                return ["base"] * len(data)

        class Special(Base):
            def handle(self, data, context):
                return ["special"] * len(data)
        """,
    )
    assert answers(load_service(model_dir), make_batch([0])) == ["special"]


def test_handler_override_wins_over_the_manifest(make_model_dir: Any, make_batch: Any) -> None:
    model_dir = make_model_dir(
        "def handle(data, context):\n    return data and ['other'] * len(data)\n",
        handler="missing.py",
        module_file="other.py",
    )
    assert answers(load_service(model_dir, handler="other.py"), make_batch([0])) == ["other"]


def test_same_module_name_in_two_model_dirs_loads_each_own(
    make_model_dir: Any, make_batch: Any
) -> None:
    first = make_model_dir("def handle(data, context):\n    return data and ['one']\n")
    second = make_model_dir("def handle(data, context):\n    return data and ['two']\n")
    assert answers(load_service(first), make_batch([0])) == ["one"]
    assert answers(load_service(second), make_batch([0])) == ["two"]


def test_torchserve_loader_interface(
    make_model_dir: Any, make_batch: Any, echo_handler: str
) -> None:
    model_dir = make_model_dir(echo_handler)
    assert TsModelLoader is ModelLoader
    service = ModelLoader().load("renamed", str(model_dir), None, None, 2, None, True, None)
    assert service.context.model_name == "renamed"
    assert answers(service, make_batch([{"a": 1}])) == [{"a": 1}]


def test_loader_without_manifest_needs_a_handler(tmp_path: Path, echo_handler: str) -> None:
    (tmp_path / "handler.py").write_text(echo_handler.replace("\n    ", "\n"))
    service = ModelLoader().load("bare", str(tmp_path), handler="handler")
    assert service.context.manifest == {}
    with pytest.raises(HandlerLoadError, match="no handler given"):
        ModelLoader().load("bare", str(tmp_path))


def test_load_service_requires_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"MANIFEST\.json is missing"):
        load_service(tmp_path)


@pytest.mark.parametrize(
    ("source", "handler", "message"),
    [
        (
            "class Helper:\n    pass\n",
            "handler.py",
            "handler module handler has no class with a handle",
        ),
        (
            "class A:\n    def handle(self, d, c): ...\n"
            "class B:\n    def handle(self, d, c): ...\n",
            "handler.py",
            "handler handler defines 2 handler classes: A, B",
        ),
        (
            "def handle(d, c):\n    pass\n",
            "handler.py:serve",
            "handler module handler has no function serve",
        ),
        (
            "import not_installed_anywhere\n",
            "handler.py",
            "handler module handler .* failed to import: ModuleNotFoundError",
        ),
        ("", "no_such_module.py", "handler no_such_module not found.*built-ins: base_handler, "),
        ("", "text_classifier", "built-in handler text_classifier is not available: .*torchtext"),
        ("serve = 3\n", "handler.py:serve", "handler handler:serve is not callable"),
    ],
)
def test_bad_handlers_fail_with_a_message_naming_the_module(
    make_model_dir: Any, source: str, handler: str, message: str
) -> None:
    model_dir = make_model_dir(source, handler=handler)
    with pytest.raises(HandlerLoadError, match=message):
        load_service(model_dir)


def test_initialise_failure_propagates(make_model_dir: Any) -> None:
    model_dir = make_model_dir(
        """
        class Broken:
            def initialize(self, context):
                raise RuntimeError("weights missing")

            def handle(self, data, context):
                return []
        """
    )
    with pytest.raises(RuntimeError, match="weights missing"):
        load_service(model_dir)


def test_dotted_module_from_the_environment(make_batch: Any, make_model_dir: Any) -> None:
    model_dir = make_model_dir(handler="marserve.streaming:send_intermediate_predict_response")
    with pytest.raises(TypeError):
        load_service(model_dir)  # found and called for initialisation with (None, context)


def test_built_in_handler_name_resolves_end_to_end(
    make_model_dir: Any, make_batch: Any, tmp_path: Path
) -> None:
    pytest.importorskip("marserve.handlers.base_handler")
    from support import models

    models.write_torchscript(models.make_mlp(), tmp_path / "weights")
    model_dir = make_model_dir(handler="base_handler", model={"serializedFile": "model.pt"})
    (model_dir / "model.pt").write_bytes((tmp_path / "weights" / "model.pt").read_bytes())
    service = load_service(model_dir, envelope="body")
    rows = [[0.1 * i] * 8 for i in range(3)]
    expected = models.make_mlp()(torch.tensor(rows)).tolist()
    got = answers(service, make_batch(rows))
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("base_handler", "BaseHandler"),
        ("image_classifier", "ImageClassifier"),
        ("image_segmenter", "ImageSegmenter"),
        ("object_detector", "ObjectDetector"),
    ],
)
def test_every_built_in_name_resolves_to_its_handler_class(
    tmp_path: Path, name: str, class_name: str
) -> None:
    entry_point, _ = resolve_handler(name, model_dir=tmp_path)
    handler = entry_point.__self__  # type: ignore[attr-defined]
    assert type(handler).__name__ == class_name
    assert type(handler).__module__ == f"marserve.handlers.{name}"


def test_model_dir_goes_before_installed_packages_but_after_the_stdlib(
    make_model_dir: Any,
) -> None:
    model_dir = make_model_dir("def handle(data, context):\n    return data\n")
    load_service(model_dir)
    position = sys.path.index(str(model_dir.resolve()))
    site = [i for i, entry in enumerate(sys.path) if entry.endswith("site-packages")]
    stdlib = sys.path.index(os.path.dirname(os.__file__))
    assert stdlib < position < min(site)
