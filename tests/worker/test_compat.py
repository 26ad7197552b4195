"""`ts.*` imports resolve to marserve's modules, without a `ts` distribution being shipped."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from marserve import compat
from marserve.model_loader import load_service
from marserve.results import PredictionResult


def run_python(code: str, *, cwd: Path, extra_path: Path | None = None) -> str:
    """Runs `code` in a fresh interpreter, where no finder has been installed yet."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


@pytest.mark.parametrize(
    ("ts_name", "attribute", "marserve_name"),
    [
        ("ts.context", "Context", "marserve.context"),
        ("ts.context", "RequestProcessor", "marserve.context"),
        ("ts.service", "Service", "marserve.service"),
        ("ts.model_loader", "TsModelLoader", "marserve.model_loader"),
        ("ts.utils.util", "PredictionException", "marserve.errors"),
        ("ts.utils.util", "load_label_mapping", "marserve.utils"),
        ("ts.utils.util", "map_class_to_label", "marserve.utils"),
        ("ts.utils.util", "list_classes_from_module", "marserve.utils"),
        ("ts.utils.util", "get_yaml_config", "marserve.utils"),
        ("ts.torch_handler.base_handler", "BaseHandler", "marserve.handlers.base_handler"),
        (
            "ts.torch_handler.vision_handler",
            "VisionHandler",
            "marserve.handlers.vision_handler",
        ),
        (
            "ts.torch_handler.image_classifier",
            "ImageClassifier",
            "marserve.handlers.image_classifier",
        ),
        (
            "ts.torch_handler.request_envelope.kserve",
            "KServeEnvelope",
            "marserve.envelopes.kserve",
        ),
        ("ts.metrics.dimension", "Dimension", "marserve.handler_metrics"),
        ("ts.metrics.metric_type_enum", "MetricTypes", "marserve.handler_metrics"),
        (
            "ts.handler_utils.utils",
            "send_intermediate_predict_response",
            "marserve.streaming",
        ),
        ("ts.handler_utils.timer", "timed", "marserve.handlers.timer"),
        (
            "ts.protocol.otf_message_handler",
            "send_intermediate_predict_response",
            "marserve.streaming",
        ),
    ],
)
def test_ts_names_are_the_very_same_objects(
    ts_name: str, attribute: str, marserve_name: str
) -> None:
    assert compat.install()
    aliased = getattr(importlib.import_module(ts_name), attribute)
    assert aliased is getattr(importlib.import_module(marserve_name), attribute)


def test_aliased_module_keeps_its_own_identity() -> None:
    compat.install()
    import ts.torch_handler.base_handler as aliased

    from marserve.handlers import base_handler

    assert aliased is base_handler
    assert base_handler.__spec__ is not None
    assert base_handler.__spec__.name == "marserve.handlers.base_handler"


def test_install_is_idempotent() -> None:
    compat.install()
    compat.install()
    finders = [f for f in sys.meta_path if type(f).__name__ == "TsAliasFinder"]
    assert len(finders) == 1


def test_names_marserve_lacks_are_not_found() -> None:
    compat.install()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ts.utils.hf_utils")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ts.torch_handler.vllm_handler")


def test_no_ts_package_without_the_loader(tmp_path: Path) -> None:
    out = run_python(
        """
        import importlib.util
        print(importlib.util.find_spec("ts"))
        """,
        cwd=tmp_path,
    )
    assert out == "None"


def test_loader_installs_the_aliases_before_importing_a_handler(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "MAR-INF").mkdir(parents=True)
    (model_dir / "MAR-INF" / "MANIFEST.json").write_text(
        '{"model": {"modelName": "m", "handler": "handler.py"}}'
    )
    (model_dir / "handler.py").write_text(
        textwrap.dedent(
            """
            from ts.context import Context
            from ts.utils.util import PredictionException

            def handle(data, context: Context):
                return None if data is None else [PredictionException.__module__] * len(data)
            """
        )
    )
    out = run_python(
        f"""
        from pathlib import Path
        from marserve.model_loader import load_service
        service = load_service(Path({str(model_dir)!r}))
        parameter = {{"name": "body", "contentType": "", "value": b""}}
        batch = [{{"requestId": b"a", "parameters": [parameter]}}]
        print(service.predict(batch)[0].body.decode())
        """,
        cwd=tmp_path,
    )
    assert out == "marserve.errors"


def test_a_real_torchserve_is_left_alone(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "ts"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "context.py").write_text("ORIGIN = 'torchserve'\n")
    out = run_python(
        """
        from marserve import compat
        import ts.context
        print(compat.install(), compat.is_installed(), ts.context.ORIGIN)
        """,
        cwd=tmp_path,
        extra_path=tmp_path / "site",
    )
    assert out == "False False torchserve"


def test_torchserve_streaming_handler_streams_through_the_sink(
    make_model_dir: Any, make_batch: Any
) -> None:
    model_dir = make_model_dir(
        """
        from ts.handler_utils.utils import send_intermediate_predict_response

        def handle(data, context):
            if data is None:
                return None
            for token in ("a", "b"):
                parts = [f"{row['body']}-{token}" for row in data]
                send_intermediate_predict_response(
                    parts, context.request_ids, "Intermediate Prediction success", 200, context
                )
            return [f"{row['body']}-end" for row in data]
        """
    )
    service = load_service(model_dir)
    streamed: list[PredictionResult] = []
    service.context.intermediate_response_sink = streamed.append
    final = service.predict(make_batch(["x", "y"]))
    assert [(r.request_id, r.body) for r in streamed] == [
        ("r0", b"x-a"),
        ("r1", b"y-a"),
        ("r0", b"x-b"),
        ("r1", b"y-b"),
    ]
    assert [r.body for r in final] == [b"x-end", b"y-end"]
