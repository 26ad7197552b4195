"""TorchServe's answer encoding, `json.dumps(value, indent=2)`, at C speed where that is exact.

The standard library indents in pure Python, a sizeable share of a worker's time on small models.
orjson with `OPT_INDENT_2` writes the same bytes for values made only of dicts with string keys,
lists, tuples, ASCII strings without DEL, booleans, None, 64-bit integers and finite floats whose
`repr` has no exponent (0 or 1e-4 <= |x| < 1e16; outside that range the two spell exponents
differently). Anything else — subclasses, NaN, non-ASCII text, very deep or circular values —
takes the standard library's path, so its bytes and its errors are what they always were.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# Below orjson's own nesting limit (255); deeper values, circular ones included, go to json.
MAX_DEPTH = 200
_SCALARS = (bool, int, type(None))


def dumps(value: Any) -> bytes:
    """`json.dumps(value, indent=2)` as UTF-8 bytes."""
    if orjson_exact(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
    return json.dumps(value, indent=2).encode("utf-8")


def orjson_exact(value: Any) -> bool:
    """Whether orjson's indented output of `value` equals json's byte for byte."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        kind = type(item)
        if kind is float:
            if not (item == 0.0 or (math.isfinite(item) and 1e-4 <= abs(item) < 1e16)):
                return False
        elif kind is str:
            if not _plain_text(item):
                return False
        elif kind in _SCALARS:
            continue
        elif depth >= MAX_DEPTH:
            return False
        elif kind is list or kind is tuple:
            pending.extend((child, depth + 1) for child in item)
        elif kind is dict:
            if not all(type(key) is str and _plain_text(key) for key in item):
                return False
            pending.extend((child, depth + 1) for child in item.values())
        else:
            return False
    return True


def _plain_text(text: str) -> bool:
    """Text both encoders write as is: json escapes non-ASCII characters and DEL, orjson not."""
    return text.isascii() and "\x7f" not in text
