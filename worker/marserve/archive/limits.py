"""Limits and network settings for unpacking archives, passed down as typed values.

Defaults fit large models (tens of GiB) yet stop zip bombs and runaway downloads; the CLI
exposes each field as a flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}


@dataclass(frozen=True)
class ExtractLimits:
    """Upper bounds on what one archive may hold, checked before and while unpacking."""

    max_archive_bytes: int = 20 * GIB
    max_unpacked_bytes: int = 20 * GIB
    max_entries: int = 100_000


@dataclass(frozen=True)
class DownloadOptions:
    """How remote archives are fetched: per-read timeout, attempts and back-off between them."""

    timeout_s: float = 60.0
    attempts: int = 5
    backoff_s: float = 1.0


DEFAULT_LIMITS = ExtractLimits()
DEFAULT_DOWNLOAD_OPTIONS = DownloadOptions()


def parse_size(text: str) -> int:
    """Reads `1048576`, `512MiB`, `20GiB` or `1.5G` as a byte count (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 512MiB, 20GiB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "")[:1].upper()])


def format_size(count: int) -> str:
    """A short human form (`1.5 GiB`) for messages and progress lines."""
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
