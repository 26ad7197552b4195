"""What the Open Inference Protocol says about a model, read from its YAML before any worker starts.

The model YAML may carry an `openInferenceProtocol` block:

    openInferenceProtocol:
      handlerInput: tensors      # or `body` (the default): what /v2/.../infer hands the handler
      inputs:  [{name: x, datatype: FP32, shape: [-1, 8]}]
      outputs: [{name: y, datatype: FP32, shape: [-1, 4]}]

`body` is what TorchServe 0.12 does: the handler gets the request document as its `body` input.
`tensors` hands it one named input per tensor, holding nested lists shaped as declared. `inputs`
and `outputs` are what model metadata lists; -1 marks a dimension of any size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marserve import tensor_codec
from marserve.loading import format_detection
from marserve.server.config import ConfigError

BLOCK = "openInferenceProtocol"
HANDLER_INPUTS = ("body", "tensors")
# Triton's platform names where one fits (TorchScript is `pytorch_libtorch` there).
PLATFORMS = {
    format_detection.ModelFormat.EAGER: "pytorch_eager",
    format_detection.ModelFormat.TORCHSCRIPT: "pytorch_libtorch",
    format_detection.ModelFormat.ONNX: "onnxruntime_onnx",
    format_detection.ModelFormat.AOT_SHARED_LIBRARY: "pytorch_aotinductor",
    format_detection.ModelFormat.PT2_PACKAGE: "pytorch_pt2",
}


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as model metadata lists it."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSignature:
    """The model's declared tensors and how its handler takes /v2 requests."""

    tensor_inputs: bool = False
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


def read_signature(yaml_config: Mapping[str, Any]) -> ModelSignature:
    """The `openInferenceProtocol` block of a model YAML; a malformed one is a ConfigError."""
    block = yaml_config.get(BLOCK, {})
    if not isinstance(block, Mapping):
        raise ConfigError(f"model YAML {BLOCK} must be a mapping")
    handler_input = block.get("handlerInput", "body")
    if handler_input not in HANDLER_INPUTS:
        raise ConfigError(
            f"model YAML {BLOCK}.handlerInput must be one of {HANDLER_INPUTS}, "
            f"not {handler_input!r}"
        )
    return ModelSignature(
        tensor_inputs=handler_input == "tensors",
        inputs=_specs(block.get("inputs", []), key="inputs"),
        outputs=_specs(block.get("outputs", []), key="outputs"),
    )


def _specs(entries: Any, *, key: str) -> tuple[TensorSpec, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"model YAML {BLOCK}.{key} must be a list")
    specs = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"each of model YAML {BLOCK}.{key} needs a name")
        name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
        try:
            tensor_codec.check_datatype(datatype)
        except tensor_codec.TensorError as error:
            raise ConfigError(f"model YAML {BLOCK}.{key} {name!r}: {error}") from error
        if not isinstance(shape, list) or not all(
            isinstance(dim, int) and not isinstance(dim, bool) and dim >= -1 for dim in shape
        ):
            raise ConfigError(
                f"model YAML {BLOCK}.{key} {name!r}: shape must list integers (-1: any size)"
            )
        specs.append(TensorSpec(name=name, datatype=str(datatype), shape=tuple(shape)))
    return tuple(specs)


def platform(manifest: Mapping[str, Any], yaml_config: Mapping[str, Any]) -> str:
    """The platform model metadata reports: the runtime the archive's model file needs, by the
    loader's own rules; a handler loading no model file of a known format: `pytorch_torchserve`."""
    model = manifest.get("model", {})
    try:
        model_format = format_detection.detect_format(
            serialized_file=model.get("serializedFile"),
            model_file=model.get("modelFile"),
            model_yaml_config=yaml_config,
        )
    except format_detection.ModelLoadError:
        return "pytorch_torchserve"
    return PLATFORMS[model_format]
