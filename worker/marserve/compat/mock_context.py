"""TorchServe's `MockContext` (`ts.torch_handler.unit_tests.test_utils.mock_context`).

Handler authors unit-test their handlers with it: it gives `initialize` a manifest naming the model
files, `model_dir` (and `gpu_id` when CUDA is there), a `MetricsStore` as `metrics` and a
`get_request_header` that answers only the explain switch. It is kept to TorchServe's behaviour so
those tests mean the same on marserve.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import torch

from marserve.compat.metrics_store import MetricsStore
from marserve.utils import get_yaml_config


class MockContext:
    """A context for calling a handler directly, without a server."""

    def __init__(  # noqa: PLR0917 - TorchServe's positional signature
        self,
        model_pt_file: str | None = "model.pt",
        model_dir: str = "ts/torch_handler/unit_tests/models/tmp",
        model_file: str | None = "model.py",
        gpu_id: str | None = "0",
        model_name: str = "mnist",
        model_yaml_config_file: str | None = None,
    ) -> None:
        model: dict[str, str] = {}
        if model_pt_file:
            model["serializedFile"] = model_pt_file
        if model_file:
            model["modelFile"] = model_file
        self.manifest: dict[str, Any] = {"model": model}
        self.system_properties: dict[str, Any] = {"model_dir": model_dir}
        if torch.cuda.is_available() and gpu_id:
            self.system_properties["gpu_id"] = gpu_id
        self.explain = False
        self.metrics = MetricsStore(uuid.uuid4(), model_name)
        self.model_yaml_config: dict[str, Any] = {}
        if model_yaml_config_file:
            config_path = os.path.join(model_dir, model_yaml_config_file)
            self.model_yaml_config = get_yaml_config(config_path)

    def get_request_header(self, idx: int, exp: str) -> bool:
        """True only when `explain` is set and both arguments are truthy, as TorchServe's."""
        return bool(idx and exp and self.explain)
