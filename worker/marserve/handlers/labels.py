"""`index_to_name.json`: the class-id to label mapping classifier archives carry.

Accepts TorchServe's shapes: `{"<id>": "label"}`, `{"<id>": [..., "label"]}` (the last element
is the label, as in the ImageNet file) and the legacy `{"object_type_names": [...]}` list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

INDEX_TO_NAME_FILE = "index_to_name.json"


def load_label_mapping(path: Path | str) -> dict[str, str] | None:
    """The mapping from `path`, or None (with a warning) when the archive has none."""
    path = Path(path)
    if not path.is_file():
        logger.warning("%s not found: outputs keep numeric class ids", path.name)
        return None
    raw = json.loads(path.read_text())
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path.name} must hold a JSON object, not {type(raw).__name__}")
    names = raw.get("object_type_names")
    if isinstance(names, list):
        raw = {str(index): name for index, name in enumerate(names)}
    return {str(key): _label(value) for key, value in raw.items()}


def map_class_to_label(
    probs: Sequence[Sequence[float]],
    mapping: Mapping[str, str] | None = None,
    lbl_classes: Sequence[Sequence[int]] | None = None,
) -> list[dict[str, float]]:
    """One `{label: probability}` dict per row; ids without a label keep their number."""
    if lbl_classes is None:
        lbl_classes = [list(range(len(row))) for row in probs]
    return [
        {label_for(class_id, mapping): prob for class_id, prob in zip(classes, row, strict=True)}
        for classes, row in zip(lbl_classes, probs, strict=True)
    ]


def label_for(class_id: int, mapping: Mapping[str, str] | None) -> str:
    key = str(class_id)
    return mapping.get(key, key) if mapping else key


def _label(value: object) -> str:
    if isinstance(value, list) and value:
        return str(value[-1])
    return str(value)
