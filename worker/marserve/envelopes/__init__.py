"""Request envelopes by name (`body`, `json`, `kserve`, `kservev2`), as the manifest names them."""

from __future__ import annotations

from marserve.envelopes.base import BaseEnvelope, EntryPoint
from marserve.envelopes.body import BodyEnvelope
from marserve.envelopes.json import JSONEnvelope
from marserve.envelopes.kserve import KServeEnvelope
from marserve.envelopes.kservev2 import KServeV2Envelope

ENVELOPES: dict[str, type[BaseEnvelope]] = {
    envelope.name: envelope
    for envelope in (BodyEnvelope, JSONEnvelope, KServeEnvelope, KServeV2Envelope)
}


def wrap(name: str, entry_point: EntryPoint) -> EntryPoint:
    """The entry point seen through envelope `name` (a file name like `kserve.py` also works)."""
    envelope = ENVELOPES.get(name.removesuffix(".py"))
    if envelope is None:
        raise ValueError(f"unknown envelope {name!r}: expected one of {', '.join(ENVELOPES)}")
    return envelope(entry_point).handle
