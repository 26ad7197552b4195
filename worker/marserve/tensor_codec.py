"""Open Inference Protocol tensors as bytes and JSON values: decode, check, encode.

Pure functions over bytes, lists and numpy arrays, shared by every transport: REST carries a
tensor as JSON `data` or as raw bytes after the JSON header (the binary data extension), gRPC as
`raw_input_contents` / `raw_output_contents`. Raw data is little-endian, row-major; a BYTES tensor
is its items each prefixed by a 4-byte little-endian length. BF16 has no numpy type and is held
as float32. Sizes are checked against the data before anything of the declared size is allocated,
so a tiny body that declares a huge shape costs nothing.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# The little-endian numpy type each datatype travels as; BYTES items are Python bytes.
WIRE_TYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = tuple(WIRE_TYPES)
_LENGTH = struct.Struct("<I")
_BY_DTYPE = {dtype.newbyteorder("="): name for name, dtype in WIRE_TYPES.items() if name != "BF16"}


class TensorError(ValueError):
    """A tensor whose datatype, shape and data disagree; the message says how, for the client."""


def check_datatype(datatype: Any) -> str:
    if datatype not in WIRE_TYPES:
        raise TensorError(f"datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    return str(datatype)


def element_count(shape: Any) -> int:
    """The number of elements `shape` declares; a shape must be a list of non-negative integers."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise TensorError(f"shape {shape!r} must be a list of non-negative integers")
    return math.prod(shape)


def flatten(data: Any) -> list[Any]:
    """Row-major flattening of nested lists; the protocol allows flat or nested `data`."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def from_json(data: Any, *, datatype: Any, shape: Any) -> Array:
    """A tensor from JSON `data` (nested or flat): every element must fit the datatype."""
    datatype = check_datatype(datatype)
    expected = element_count(shape)
    if not isinstance(data, list):
        raise TensorError("data must be a list")
    flat = flatten(data)
    if len(flat) != expected:
        raise TensorError(f"shape {list(shape)} needs {expected} elements, data has {len(flat)}")
    fits = _element_check(datatype)
    for value in flat:
        if not fits(value):
            raise TensorError(f"{value!r} is not a valid {datatype} element")
    if datatype == "BYTES":
        array = np.empty(len(flat), dtype=object)
        array[:] = [value.encode() for value in flat]
    else:
        array = np.array(flat, dtype=_memory_type(datatype))
    return array.reshape(tuple(shape))


def from_raw(raw: bytes, *, datatype: Any, shape: Any) -> Array:
    """A tensor from its raw little-endian bytes; the byte count must match shape and datatype."""
    datatype = check_datatype(datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_items(raw, count=count).reshape(tuple(shape))
    wire = WIRE_TYPES[datatype]
    if len(raw) != count * wire.itemsize:
        raise TensorError(
            f"shape {list(shape)} of {datatype} needs {count * wire.itemsize} bytes, got {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=wire)
    if datatype == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif datatype == "BOOL" and not np.isin(array.view(np.uint8), (0, 1)).all():
        raise TensorError("BOOL bytes must each be 0 or 1")
    return array.astype(_memory_type(datatype), copy=False).reshape(tuple(shape))


def to_raw(array: Array, *, datatype: str) -> bytes:
    """The raw little-endian bytes of `array` as `datatype` (BYTES: length-prefixed items)."""
    datatype = check_datatype(datatype)
    if datatype == "BYTES":
        items = [_as_bytes(item) for item in array.reshape(-1)]
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)
    if datatype == "BF16":
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return rounded.astype("<u2").tobytes()
    return np.ascontiguousarray(array, dtype=WIRE_TYPES[datatype]).tobytes()


def to_json(array: Array, *, datatype: str) -> list[Any]:
    """The flat row-major JSON `data` of `array`; BYTES items as UTF-8 text."""
    datatype = check_datatype(datatype)
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [_as_text(item) for item in flat]
    values: list[Any] = flat.astype(_memory_type(datatype), copy=False).tolist()
    return values


def to_nested(array: Array, *, datatype: str) -> Any:
    """`array` as nested JSON lists shaped like it, as a handler calling torch.tensor expects."""
    if datatype == "BYTES":
        return np.vectorize(_as_text, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def datatype_of(array: Array) -> str:
    """The protocol datatype of a numpy array; text and byte strings are BYTES."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    name = _BY_DTYPE.get(array.dtype.newbyteorder("="))
    if name is None:
        raise TensorError(f"numpy type {array.dtype} has no Open Inference Protocol datatype")
    return name


def _memory_type(datatype: str) -> np.dtype[Any]:
    """The native numpy type a tensor is held in once decoded (BF16 as float32)."""
    if datatype == "BF16":
        return np.dtype(np.float32)
    return WIRE_TYPES[datatype].newbyteorder("=")


def _bytes_items(raw: bytes, *, count: int) -> Array:
    """BYTES items: each a 4-byte little-endian length and that many bytes, exactly `count`."""
    if count * _LENGTH.size > len(raw):
        raise TensorError(f"{count} BYTES items need at least {count * 4} bytes, got {len(raw)}")
    items = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > len(raw):
            raise TensorError(f"BYTES item {index} has no length: the data ends at {offset}")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise TensorError(
                f"BYTES item {index} declares {length} bytes, only {len(raw) - offset} remain"
            )
        items[index] = raw[offset : offset + length]
        offset += length
    if offset != len(raw):
        raise TensorError(f"{len(raw) - offset} bytes left after {count} BYTES items")
    return items


def _element_check(datatype: str) -> Callable[[Any], bool]:
    if datatype == "BOOL":
        return lambda value: isinstance(value, bool)
    if datatype == "BYTES":
        return lambda value: isinstance(value, str)
    if datatype.startswith(("INT", "UINT")):
        info = np.iinfo(WIRE_TYPES[datatype])
        low, high = int(info.min), int(info.max)
        return lambda value: (
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        )
    return lambda value: isinstance(value, int | float) and not isinstance(value, bool)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return str(item).encode()


def _as_text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode(errors="replace")
    return str(item)
