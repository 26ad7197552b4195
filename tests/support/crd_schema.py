"""Validate custom resources against a CRD's openAPIV3Schema the way the API server would.

jsonschema does the checking once the Kubernetes extensions are translated: `nullable` admits
null, `x-kubernetes-int-or-string` admits both, and every object without
`x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`, so a field the server
would silently prune fails here instead. `apply_defaults` mirrors the server's defaulting.
CEL rules (`x-kubernetes-validations`) are evaluated separately by `cel_violations` with
cel-python, on the defaulted object, at each node that is present (as the API server does).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "inferencemodel.yaml"
# Third-party CRDs as their projects publish them (sources and versions in the README there).
PUBLISHED_CRDS = Path(__file__).resolve().parent / "published_crds"
HTTP_SCALED_OBJECT_CRD = PUBLISHED_CRDS / "http.keda.sh_httpscaledobjects.yaml"
HTTP_ROUTE_CRD = PUBLISHED_CRDS / "gateway.networking.k8s.io_httproutes.excerpt.yaml"


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def published_errors(path: Path, obj: Mapping[str, Any]) -> list[str]:
    """Schema and CEL violations of `obj` against a published CRD, for the version `obj` names."""
    crd = load_crd(path)
    version = obj["apiVersion"].rpartition("/")[2]
    return errors(crd, obj, version) + cel_violations(crd, obj, version)


def openapi_schema(crd: Mapping[str, Any], version: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of `version`, or of the storage version when none is named."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version or (version is None and entry.get("storage")):
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Translates one structural-schema node (and its children) into plain JSON Schema."""
    result = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    result.pop("nullable", None)
    for key in ("properties",):
        if key in result:
            result[key] = {name: to_json_schema(child) for name, child in result[key].items()}
    if isinstance(result.get("additionalProperties"), Mapping):
        result["additionalProperties"] = to_json_schema(result["additionalProperties"])
    if "items" in result:
        result["items"] = to_json_schema(result["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in result:
            result[key] = [to_json_schema(child) for child in result[key]]
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if result.get("type") == "object" and "additionalProperties" not in result and not preserve:
        result["additionalProperties"] = False
    if schema.get("nullable"):
        return {"anyOf": [{"type": "null"}, result]}
    return result


def validator(crd: Mapping[str, Any], version: str | None = None) -> jsonschema.Validator:
    json_schema = to_json_schema(openapi_schema(crd, version))
    # The server validates metadata as ObjectMeta, whatever the CRD says about it.
    json_schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return jsonschema.Draft202012Validator(json_schema)


def errors(crd: Mapping[str, Any], obj: Mapping[str, Any], version: str | None = None) -> list[str]:
    """Every schema violation of `obj`, as 'path: message' lines; empty means accepted."""
    found = validator(crd, version).iter_errors(obj)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found)


def apply_defaults(schema: Mapping[str, Any], obj: Any) -> Any:
    """A copy of `obj` with the schema's defaults filled in, parents before children, the way
    the API server defaults a stored object."""
    obj = copy.deepcopy(obj)
    _default_into(schema, obj)
    return obj


def _default_into(schema: Mapping[str, Any], obj: Any) -> None:
    if isinstance(obj, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in obj and "default" in child:
                obj[name] = copy.deepcopy(child["default"])
            if name in obj:
                _default_into(child, obj[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name, value in obj.items():
                if name not in schema.get("properties", {}):
                    _default_into(extra, value)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            _default_into(schema["items"], item)


def walk(
    schema: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every schema node with its path; array items appear as the segment '[]'."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, (*path, name))
    if "items" in schema:
        yield from walk(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], (*path, "{}"))


def cel_rules(schema: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str, str]]:
    """(path, rule, message) of every x-kubernetes-validations rule in the schema."""
    return [
        (path, rule["rule"], rule.get("message", ""))
        for path, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    ]


@functools.cache
def _cel_program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _nodes_at(obj: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield obj
    elif path[0] == "[]" and isinstance(obj, list):
        for item in obj:
            yield from _nodes_at(item, path[1:])
    elif path[0] == "{}" and isinstance(obj, dict):
        for value in obj.values():
            yield from _nodes_at(value, path[1:])
    elif isinstance(obj, dict) and path[0] in obj:
        yield from _nodes_at(obj[path[0]], path[1:])


def cel_violations(
    crd: Mapping[str, Any], obj: Mapping[str, Any], version: str | None = None
) -> list[str]:
    """The messages of the CEL rules `obj` breaks, evaluated after defaulting like the server."""
    schema = openapi_schema(crd, version)
    defaulted = apply_defaults(schema, obj)
    broken = []
    for path, rule, message in cel_rules(schema):
        for node in _nodes_at(defaulted, path):
            if not _cel_program(rule).evaluate({"self": celpy.json_to_cel(node)}):
                broken.append(message)
    return broken
