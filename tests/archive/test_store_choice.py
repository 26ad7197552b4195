"""Which store reads a URI, and the message when its client library is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from marserve.archive import download
from marserve.archive.errors import ArchiveError
from marserve.archive.limits import DownloadOptions, ExtractLimits


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("https://models.example.com/m.mar", "https"),
        ("http://127.0.0.1:8000/m.mar", "http"),
        ("s3://bucket/m.mar", "s3"),
        ("gs://bucket/m.mar", "gs"),
        ("az://account/container/m.mar", "az"),
        ("https://account.blob.core.windows.net/container/m.mar?sv=1&sig=x", "az"),
        ("https://blob.core.windows.net.example.com/m.mar", "https"),
    ],
)
def test_each_uri_goes_to_its_store(uri: str, scheme: str) -> None:
    assert download.store_scheme(uri) == scheme
    assert download.is_remote(uri)


def test_a_missing_client_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "marserve.archive.gcs_store", None)
    with pytest.raises(ArchiveError, match=r"gs:// archives need the cloud extra \(pip install"):
        download.download(
            "gs://bucket/m.mar",
            tmp_path / "archive",
            limits=ExtractLimits(),
            options=DownloadOptions(attempts=1),
        )
