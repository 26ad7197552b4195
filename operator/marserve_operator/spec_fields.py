"""Typed, bounded reads from an InferenceModel spec, with errors that name the field."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast


class SpecError(ValueError):
    """An InferenceModel spec the operator cannot serve; the message is meant for its author."""


class SpecFields:
    """Typed, bounded reads from one object of the spec; `path` names it in error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path or 'spec'} must be an object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def obj(self, key: str) -> SpecFields:
        value = self.data.get(key)
        return SpecFields({} if value is None else value, self.where(key))

    def integer(self, key: str, default: int | None, *, low: int, high: int) -> int:
        value = self.data.get(key)
        if value is None:
            value = default
        if value is None:
            raise SpecError(f"{self.where(key)} is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self.where(key)} must be an integer, not {value!r}")
        if not low <= value <= high:
            raise SpecError(f"{self.where(key)} must be between {low} and {high}, not {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SpecError(f"{self.where(key)} must be true or false, not {value!r}")
        return value

    def number(self, key: str, *, low: float, high: float) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{self.where(key)} must be a number, not {value!r}")
        if not low <= value <= high:
            raise SpecError(f"{self.where(key)} must be between {low} and {high:.0f}, not {value}")
        return float(value)

    def text(
        self, key: str, *, required: bool = False, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise SpecError(f"{self.where(key)} is required")
            return None
        if not isinstance(value, str) or not value:
            raise SpecError(f"{self.where(key)} must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise SpecError(f"{self.where(key)} {value!r} must match {pattern.pattern}")
        return value

    def choice(self, key: str, allowed: Sequence[str], default: str) -> str:
        value = self.data.get(key)
        if value is None:
            value = default
        if value not in allowed:
            raise SpecError(f"{self.where(key)} must be one of {', '.join(allowed)}, not {value!r}")
        return cast(str, value)

    def items(self, key: str) -> tuple[Mapping[str, Any], ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise SpecError(f"{self.where(key)} must be a list of objects")
        return tuple(copy.deepcopy(v) for v in value)

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise SpecError(f"{self.where(key)} must be an object")
        return copy.deepcopy(dict(value))
