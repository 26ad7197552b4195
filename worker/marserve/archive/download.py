"""Fetching remote archives to a local file: picks the store for a URI's scheme.

`http(s)://` uses the standard library; `s3://`, `gs://` and Azure Blob URIs use the providers'
own client libraries (the `cloud` extra), imported only when such a URI is fetched, so serving
local archives never needs them. URLs in messages lose their query string and user info: they
may carry signatures.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from marserve.archive import transfer
from marserve.archive.errors import ArchiveError
from marserve.archive.http_store import HttpObject
from marserve.archive.limits import DownloadOptions, ExtractLimits
from marserve.archive.progress import Report
from marserve.contract import AZURE_BLOB_HOST_SUFFIX

REMOTE_SCHEMES = ("http://", "https://", "s3://", "gs://", "az://")
# Scheme -> (module, class) of the store that reads it.
_CLOUD_STORES = {
    "s3": ("marserve.archive.s3_store", "S3Object"),
    "gs": ("marserve.archive.gcs_store", "GcsObject"),
    "az": ("marserve.archive.azure_store", "AzureBlob"),
}


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def display_url(url: str) -> str:
    """The URL without user info or query: safe to print and to put in a pod's status."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def is_azure_blob_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and (parts.hostname or "").endswith(AZURE_BLOB_HOST_SUFFIX)


def store_scheme(url: str) -> str:
    """Which store reads `url`: its scheme, or `az` for an https Azure Blob URL."""
    return "az" if is_azure_blob_url(url) else urlsplit(url).scheme


def source_for(url: str) -> transfer.Source:
    scheme = store_scheme(url)
    if scheme not in _CLOUD_STORES:
        return HttpObject(url)
    module_name, class_name = _CLOUD_STORES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ArchiveError(
            f"{scheme}:// archives need the cloud extra (pip install 'marserve[cloud]'): {error}"
        ) from error
    store: transfer.Source = getattr(module, class_name)(url, dict(os.environ))
    return store


def download(
    url: str,
    target: Path,
    *,
    limits: ExtractLimits,
    options: DownloadOptions,
    report: Report | None = None,
) -> str:
    """Downloads `url` into `target` and returns the body's sha256 (hex)."""
    return transfer.copy_to_file(
        source_for(url),
        target,
        shown=display_url(url),
        limits=limits,
        options=options,
        report=report,
    )
