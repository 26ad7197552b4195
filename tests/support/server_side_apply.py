"""Server-side apply as the Kubernetes emulator does it: the fields each applier owns, and the
object an apply leaves behind.

Simplified from the API server's: each applier (field manager) owns the fields of its last applied
object, recorded in metadata.managedFields; lists are atomic (owned and replaced whole, where the
API server merges some by key); conflicts with other writers are always won by the applier (the
operator applies with force), and writes that are not applies own nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Never owned by an applier: the server sets them, or they name the object.
_SERVER_FIELDS = frozenset(
    {"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "status"}
)

FieldPath = tuple[str, ...]


def apply(
    current: Mapping[str, Any] | None, applied: Mapping[str, Any], *, manager: str
) -> dict[str, Any]:
    """The object once `manager` has applied `applied` over `current` (None when there is none).

    The applied fields merge into the stored ones, the fields this manager applied before but no
    longer does are removed, and the manager's managedFields entry records what it owns now.
    Identity and versions (uid, resourceVersion, generation) are the server's to stamp.
    """
    owned = _field_paths(applied)
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": applied.get("apiVersion"),
        "fieldsType": "FieldsV1",
        "fieldsV1": _fields_v1(owned),
    }
    if current is None:
        result = copy.deepcopy(dict(applied))
        result.setdefault("metadata", {})["managedFields"] = [entry]
        return result
    managers = current["metadata"].get("managedFields") or []
    before = next((m for m in managers if m.get("manager") == manager), None)
    result = _merged(copy.deepcopy(dict(current)), applied)
    for path in _paths_of((before or {}).get("fieldsV1") or {}) - owned:
        _remove(result, path)
    others = [m for m in managers if m.get("manager") != manager]
    result["metadata"]["managedFields"] = [*others, entry]
    return result


def _field_paths(obj: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The leaf fields an applied object sets; lists count as one field each (atomic)."""
    paths: set[FieldPath] = set()
    for key, value in obj.items():
        if key in _SERVER_FIELDS and prefix in {(), ("metadata",)}:
            continue
        if isinstance(value, Mapping) and value:
            paths |= _field_paths(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def _fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    """Field paths in the API server's managedFields notation ({"f:spec": {"f:replicas": {}}})."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _paths_of(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The field paths a managedFields entry records: `_fields_v1` read back."""
    paths: set[FieldPath] = set()
    for key, value in fields.items():
        path = (*prefix, key.removeprefix("f:"))
        paths |= _paths_of(value, path) if value else {path}
    return paths


def _merged(stored: Any, applied: Any) -> Any:
    """Maps merge key by key; anything else, lists included, is replaced by the applied value."""
    if isinstance(stored, Mapping) and isinstance(applied, Mapping):
        result = dict(stored)
        for key, value in applied.items():
            result[key] = _merged(stored.get(key), value)
        return result
    return copy.deepcopy(applied)


def _remove(obj: dict[str, Any], path: FieldPath) -> None:
    node: Any = obj
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)
