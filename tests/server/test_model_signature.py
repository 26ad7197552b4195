"""The model YAML's `openInferenceProtocol` block and the platform model metadata reports."""

from __future__ import annotations

from typing import Any

import pytest

from marserve.server.config import ConfigError
from marserve.server.model_signature import TensorSpec, platform, read_signature


def test_the_block_declares_tensors_and_the_handlers_input() -> None:
    signature = read_signature(
        {"openInferenceProtocol": {"handlerInput": "tensors",
                                   "inputs": [{"name": "x", "datatype": "FP16", "shape": [-1, 3]}]}}
    )  # fmt: skip
    assert signature.tensor_inputs
    assert signature.inputs == (TensorSpec(name="x", datatype="FP16", shape=(-1, 3)),)
    assert signature.outputs == ()
    assert not read_signature({}).tensor_inputs  # TorchServe's way by default


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("tensors", "must be a mapping"),
        ({"handlerInput": "rows"}, "handlerInput must be one of"),
        ({"inputs": {"name": "x"}}, "inputs must be a list"),
        ({"outputs": [{"datatype": "FP32", "shape": [1]}]}, "needs a name"),
        ({"inputs": [{"name": "x", "datatype": "FP8", "shape": [1]}]}, "'x': datatype 'FP8'"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}, "-1: any size"),
    ],
)
def test_a_malformed_block_is_a_config_error(block: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_signature({"openInferenceProtocol": block})


@pytest.mark.parametrize(
    ("model", "yaml_config", "expected"),
    [
        ({"modelFile": "model.py", "serializedFile": "model.pth"}, {}, "pytorch_eager"),
        ({"serializedFile": "model.pt"}, {}, "pytorch_libtorch"),
        ({"serializedFile": "model.onnx"}, {}, "onnxruntime_onnx"),
        ({"serializedFile": "model.pt2"}, {}, "pytorch_pt2"),
        ({"serializedFile": "model.so"}, {"pt2": {"export": {"aot_compile": True}}},
         "pytorch_aotinductor"),
        ({"handler": "custom.py"}, {}, "pytorch_torchserve"),
    ],
)  # fmt: skip
def test_platform_follows_the_loaders_format_rules(
    model: dict[str, Any], yaml_config: dict[str, Any], expected: str
) -> None:
    assert platform({"model": model}, yaml_config) == expected
