"""Cloud object stores against local emulators: S3 (moto), GCS (gcp-storage-emulator) and Azure
Blob (Azurite), each behind a proxy that can cut a body short or refuse as the provider does.

The same hostile cases run for every store: success with a digest, 403, 404, a truncated body
(resumed, and given up), a wrong digest and an object over the size limit. Each outcome is one
line on stderr, the same line in the termination log, and nothing half-written.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marserve.contract import ExtractedArchive
from support import object_stores
from support.object_stores import HostileProxy

FAST_RETRIES = ("--attempts", "2", "--retry-backoff", "0.01")
ARCHIVE_BYTES = 1024 * 1024


pytestmark = pytest.mark.usefixtures("cloud_env")


@dataclass
class Bucket:
    """One emulated bucket or container behind a hostile proxy, the client pointed at it."""

    provider: str
    proxy: HostileProxy
    put: Callable[[str, bytes], None]
    uri: Callable[[str], str]
    refuse: Callable[[], None]


def s3_bucket(endpoint: str, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    import boto3

    name = f"b-{uuid.uuid4().hex[:12]}"
    direct = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="AKIDMARSERVE",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    )
    direct.create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDMARSERVE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")

    def put(key: str, body: bytes) -> None:
        direct.put_object(Bucket=name, Key=key, Body=body)

    return put, lambda key: f"s3://{name}/{key}"


@pytest.fixture(params=["s3", "gs", "az"])
def bucket(
    request: pytest.FixtureRequest,
    serve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Bucket:
    provider = request.param
    endpoint = request.getfixturevalue(
        {"s3": "s3_endpoint", "gs": "gcs_endpoint", "az": "azurite_endpoint"}[provider]
    )
    name = f"b-{uuid.uuid4().hex[:12]}"
    upstream = endpoint.removesuffix(f"/{object_stores.AZURITE_ACCOUNT}")
    proxy = HostileProxy(upstream)
    proxy_url = serve(proxy.app()).url
    if provider == "s3":
        put, uri = s3_bucket(endpoint, proxy_url, monkeypatch)
        refusal = (403, "application/xml", "<Error><Code>AccessDenied</Code></Error>")
    elif provider == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        direct = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
        direct.create_bucket(name)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy_url)

        def put(key: str, body: bytes) -> None:
            direct.bucket(name).blob(key).upload_from_string(body)

        def uri(key: str) -> str:
            return f"gs://{name}/{key}"

        refusal = (403, "application/json", '{"error": {"code": 403, "message": "denied"}}')
    else:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(
            object_stores.azurite_connection_string(endpoint)
        )
        service.create_container(name)
        via_proxy = f"{proxy_url}/{object_stores.AZURITE_ACCOUNT}"
        monkeypatch.setenv(
            "AZURE_STORAGE_CONNECTION_STRING", object_stores.azurite_connection_string(via_proxy)
        )

        def put(key: str, body: bytes) -> None:
            service.get_blob_client(name, key).upload_blob(body)

        def uri(key: str) -> str:
            return f"az://{object_stores.AZURITE_ACCOUNT}/{name}/{key}"

        refusal = None

    def refuse() -> None:
        if refusal is not None:
            proxy.refusal = refusal
        else:  # Azurite checks the shared key itself: a wrong one is a real 403
            wrong = object_stores.azurite_connection_string(via_proxy, key="d3Jvbmc=" * 11)
            monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)

    return Bucket(provider, proxy, put, uri, refuse)


def test_success_with_digest_writes_the_record(
    bucket: Bucket, marserve: Callable[..., Any], tmp_path: Path
) -> None:
    body = object_stores.model_archive()
    bucket.put("models/mlp v1.mar", body)
    dest = tmp_path / "models"
    digest = hashlib.sha256(body).hexdigest()
    outcome = marserve("extract", bucket.uri("models/mlp v1.mar"), dest, "--sha256", digest)
    assert outcome.code == 0, outcome.stderr_lines
    assert (dest / "weights.bin").stat().st_size == ARCHIVE_BYTES
    assert ExtractedArchive.from_json(outcome.termination_log) == ExtractedArchive("m", None)
    assert any(line.startswith(f"{bucket.provider} credentials: ") for line in outcome.stderr_lines)


def test_missing_object_is_a_clear_404(
    bucket: Bucket, marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    uri = bucket.uri("absent.mar")
    outcome = marserve("extract", uri, dest, *FAST_RETRIES, "--quiet")
    clean_failure(outcome, dest, expect=f"download of {uri} failed: HTTP 404")


def test_refused_access_is_a_clear_403(
    bucket: Bucket, marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    bucket.put("m.mar", object_stores.model_archive(1024))
    bucket.refuse()
    dest = tmp_path / "models"
    uri = bucket.uri("m.mar")
    outcome = marserve("extract", uri, dest, *FAST_RETRIES, "--quiet")
    clean_failure(outcome, dest, expect=f"download of {uri} failed: HTTP 403")


def test_truncated_body_resumes_with_the_digest_intact(
    bucket: Bucket, marserve: Callable[..., Any], tmp_path: Path
) -> None:
    body = object_stores.model_archive()
    bucket.put("m.mar", body)
    bucket.proxy.cuts = 1
    dest = tmp_path / "models"
    digest = hashlib.sha256(body).hexdigest()
    outcome = marserve("extract", bucket.uri("m.mar"), dest, "--sha256", digest, *FAST_RETRIES)
    assert outcome.code == 0, outcome.stderr_lines
    assert bucket.proxy.cuts == 0
    retries = [line for line in outcome.stderr_lines if line.startswith("retrying download")]
    # azure-storage-blob re-reads a cut chunk itself (a fixed loop no option turns off); the
    # others leave every attempt to ours.
    assert len(retries) == (0 if bucket.provider == "az" else 1), outcome.stderr_lines
    assert (dest / "weights.bin").stat().st_size == ARCHIVE_BYTES


def test_body_cut_on_every_attempt_gives_up_cleanly(
    bucket: Bucket, marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    bucket.put("m.mar", object_stores.model_archive())
    bucket.proxy.cuts = 99
    dest = tmp_path / "models"
    outcome = marserve("extract", bucket.uri("m.mar"), dest, *FAST_RETRIES, "--quiet")
    clean_failure(outcome, dest, expect="failed after 2 attempts")


def test_wrong_digest_leaves_nothing(
    bucket: Bucket, marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    bucket.put("m.mar", object_stores.model_archive(1024))
    dest = tmp_path / "models"
    outcome = marserve("extract", bucket.uri("m.mar"), dest, "--sha256", "ab" * 32, "--quiet")
    clean_failure(outcome, dest, expect=f"expected {'ab' * 32}")


def test_object_over_the_size_limit_is_refused_before_its_body(
    bucket: Bucket, marserve: Callable[..., Any], clean_failure: Callable[..., None], tmp_path: Path
) -> None:
    bucket.put("m.mar", object_stores.model_archive())
    dest = tmp_path / "models"
    outcome = marserve(
        "extract", bucket.uri("m.mar"), dest, "--max-archive-size", "64KiB", "--quiet"
    )
    clean_failure(outcome, dest, expect="is larger than the limit of 64.0 KiB (got 1.0 MiB")
