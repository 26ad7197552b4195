"""Which credentials each store uses, from real environments and files: static keys from a
Secret, IRSA's web identity exchanged at moto's STS, a GCS service-account key file and the
GKE metadata server (small aiohttp fakes of Google's token endpoints), Azure's account key, SAS
and workload identity; and a clear error when workload identity is asked for but the service
account's webhook left nothing to use.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from marserve.archive import azure_store
from marserve.contract import EXTRACT_ENV
from support import object_stores
from support.object_stores import HostileProxy

pytestmark = pytest.mark.usefixtures("cloud_env")


def _ask_for_workload_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXTRACT_ENV.archive_identity, "workload")


# --- S3 -------------------------------------------------------------------------------------


def _s3_object(
    endpoint: str,
    serve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    *,
    acl: str = "private",
) -> Any:
    """A fresh object in moto, and the proxy (recording signatures) the extractor goes through."""
    import boto3

    name = f"b-{uuid.uuid4().hex[:12]}"
    direct = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        region_name="us-east-1",
    )
    direct.create_bucket(Bucket=name)
    direct.put_object(Bucket=name, Key="m.mar", Body=object_stores.model_archive(1024), ACL=acl)
    proxy = HostileProxy(endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", serve(proxy.app()).url)
    return f"s3://{name}/m.mar", proxy


def test_s3_irsa_exchanges_the_web_identity_token_at_sts(
    s3_endpoint: str,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    uri, proxy = _s3_object(s3_endpoint, serve, monkeypatch)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/models-reader")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    _ask_for_workload_identity(monkeypatch)
    outcome = marserve("extract", uri, tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert "s3 credentials: assume-role-with-web-identity" in outcome.stderr_lines
    assert proxy.requests[0] == "POST /"  # sts:AssumeRoleWithWebIdentity
    signed = [a for a in proxy.authorizations if a and "Credential=" in a]
    assert signed and all("Credential=ASIA" in a for a in signed)  # STS's temporary keys


def test_s3_static_keys_from_the_secret_sign_the_request(
    s3_endpoint: str,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    uri, proxy = _s3_object(s3_endpoint, serve, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMSECRET")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-secret")
    outcome = marserve("extract", uri, tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert "s3 credentials: env" in outcome.stderr_lines
    assert all("Credential=AKIDFROMSECRET/" in str(a) for a in proxy.authorizations)


def test_s3_without_credentials_sends_unsigned_requests(
    s3_endpoint: str,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    uri, proxy = _s3_object(s3_endpoint, serve, monkeypatch, acl="public-read")
    outcome = marserve("extract", uri, tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert "s3 credentials: none (unsigned requests)" in outcome.stderr_lines
    assert proxy.authorizations == [None]


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("s3://bucket/m.mar", "eks.amazonaws.com/role-arn"),
        ("az://account/container/m.mar", "azure.workload.identity/client-id"),
        ("gs://bucket/m.mar", "iam.gke.io/gcp-service-account"),
    ],
)
def test_workload_identity_without_the_webhooks_work_says_what_to_fix(
    uri: str,
    fix: str,
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _ask_for_workload_identity(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a-key-the-chain-would-otherwise-use")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    dest = tmp_path / "models"
    outcome = marserve("extract", uri, dest, "--attempts", "1", "--quiet")
    clean_failure(outcome, dest, expect=fix)
    assert f"workload identity for {uri.split('://', maxsplit=1)[0]}://" in outcome.stderr_lines[0]


# --- Google Cloud Storage -------------------------------------------------------------------


def _gcs_object(endpoint: str, serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    name = f"b-{uuid.uuid4().hex[:12]}"
    direct = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    direct.create_bucket(name)
    direct.bucket(name).blob("m.mar").upload_from_string(object_stores.model_archive(1024))
    proxy = HostileProxy(endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", serve(proxy.app()).url)
    return f"gs://{name}/m.mar", proxy


def _token_answer(token: str) -> dict[str, Any]:
    return {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}


def test_gcs_service_account_key_file(
    gcs_endpoint: str,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    grants: list[str] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        grants.append(str(form.get("grant_type")))
        return web.json_response(_token_answer("sa-access-token"))

    app = web.Application()
    app.router.add_post("/token", token)
    oauth = serve(app)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_file = tmp_path / "key.json"  # what the Secret mounts
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "models",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "reader@models.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{oauth.url}/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    uri, proxy = _gcs_object(gcs_endpoint, serve, monkeypatch)
    outcome = marserve("extract", uri, tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert "gs credentials: service account key" in outcome.stderr_lines
    assert grants and set(grants) == {"urn:ietf:params:oauth:grant-type:jwt-bearer"}
    assert set(proxy.authorizations) == {"Bearer sa-access-token"}


def test_gcs_workload_identity_through_the_metadata_server(
    gcs_endpoint: str,
    serve: Callable[..., Any],
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """GKE's metadata server, as google-auth calls it: a ping, the account, then a token."""
    asked: list[str] = []

    async def metadata(request: web.Request) -> web.Response:
        asked.append(request.path)
        if request.headers.get("Metadata-Flavor") != "Google":
            raise web.HTTPForbidden()
        flavor = {"Metadata-Flavor": "Google"}
        path = request.path.removeprefix("/computeMetadata/v1/")
        if path.startswith("instance/service-accounts/default/token"):
            return web.json_response(_token_answer("gke-access-token"), headers=flavor)
        if path.startswith("instance/service-accounts/default"):
            account = {"email": "reader@models.iam.gserviceaccount.com", "aliases": ["default"]}
            return web.json_response({**account, "scopes": []}, headers=flavor)
        if path == "project/project-id":
            return web.Response(text="models", headers=flavor)
        if path == "universe/universe-domain":
            return web.Response(text="googleapis.com", headers=flavor)
        return web.Response(text="", headers=flavor)

    app = web.Application()
    app.router.add_get("/{tail:.*}", metadata)
    host = serve(app).url.removeprefix("http://")
    object_stores.point_metadata_server_at(monkeypatch, host)
    _ask_for_workload_identity(monkeypatch)
    uri, proxy = _gcs_object(gcs_endpoint, serve, monkeypatch)
    outcome = marserve("extract", uri, tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert "gs credentials: metadata server (workload identity)" in outcome.stderr_lines
    assert any("service-accounts/default/token" in path for path in asked)
    assert set(proxy.authorizations) == {"Bearer gke-access-token"}


# --- Azure Blob -----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["account key", "SAS token"])
def test_azure_key_or_sas_from_the_secret(
    secret: str,
    azurite_endpoint: str,
    marserve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    account = object_stores.AZURITE_ACCOUNT
    container = f"c-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient.from_connection_string(
        object_stores.azurite_connection_string(azurite_endpoint)
    )
    service.create_container(container)
    service.get_blob_client(container, "m.mar").upload_blob(object_stores.model_archive(1024))
    monkeypatch.setenv(azure_store.ENDPOINT_ENV, azurite_endpoint)
    if secret == "account key":
        monkeypatch.setenv("AZURE_STORAGE_KEY", object_stores.AZURITE_KEY)
    else:
        sas = generate_blob_sas(
            account,
            container,
            "m.mar",
            account_key=object_stores.AZURITE_KEY,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    outcome = marserve("extract", f"az://{account}/{container}/m.mar", tmp_path / "models")
    assert outcome.code == 0, outcome.stderr_lines
    assert f"az credentials: {secret}" in outcome.stderr_lines


def test_azure_credential_choice_follows_the_environment(tmp_path: Path) -> None:
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    token_file = tmp_path / "azure-identity-token"  # what the webhook projects
    token_file.write_text(base64.b64encode(b"federated").decode())
    federated = {
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000000a",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-00000000000b",
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
    }
    address = azure_store.BlobAddress.parse("az://acct/models/m.mar")
    client, kind = azure_store.blob_client(address, federated, {})
    assert kind == "workload identity"
    assert isinstance(client.credential, WorkloadIdentityCredential)
    assert client.url == "https://acct.blob.core.windows.net/models/m.mar"

    secret = {**federated, "AZURE_CLIENT_SECRET": "s"}
    del secret["AZURE_FEDERATED_TOKEN_FILE"]
    client, kind = azure_store.blob_client(address, secret, {})
    assert (kind, type(client.credential)) == ("client secret", ClientSecretCredential)

    in_url = azure_store.BlobAddress.parse(
        "https://acct.blob.core.windows.net/models/dir/m%201.mar?sv=2024&sig=abc"
    )
    assert (in_url.container, in_url.blob) == ("models", "dir/m 1.mar")
    assert in_url.sas == "sv=2024&sig=abc"
    client, kind = azure_store.blob_client(in_url, {}, {})
    assert kind == "SAS in the URI"
    assert "sig=abc" in client.url
    assert azure_store.blob_client(address, {}, {})[1] == "none (anonymous requests)"
