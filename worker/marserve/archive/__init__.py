"""Model archives: writing MARs like `torch-model-archiver` and unpacking them safely.

The server serves a `.mar` through `extract_archive`; the init container runs the same code as
`marserve extract`, so every archive meets one set of safety checks.
"""

from __future__ import annotations

from marserve.archive.errors import ArchiveError
from marserve.archive.extract import extract_archive
from marserve.archive.limits import DownloadOptions, ExtractLimits

__all__ = ["ArchiveError", "DownloadOptions", "ExtractLimits", "extract_archive"]
