"""The built-in handler names an archive's manifest may give instead of a handler file.

The model loader resolves `handler: image_classifier` through `BUILTIN_HANDLERS`; names that
TorchServe has but marserve does not are listed with the reason, so the loader can say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_PACKAGE = "marserve.handlers"

BUILTIN_HANDLERS: Mapping[str, str] = MappingProxyType(
    {
        name: f"{_PACKAGE}.{name}"
        for name in ("base_handler", "image_classifier", "image_segmenter", "object_detector")
    }
)
"""Built-in handler name -> dotted module holding exactly one handler class."""

UNSUPPORTED_BUILTIN_HANDLERS: Mapping[str, str] = MappingProxyType(
    {
        "text_classifier": (
            "TorchServe's text_classifier needs torchtext: its source_vocab.pt is a pickled "
            "torchtext Vocab and its tokenizer is torchtext's; torchtext is no longer released "
            "for current torch. Package the model with a custom handler instead."
        ),
    }
)
"""Built-in names TorchServe accepts that marserve does not, with the reason to show users."""
