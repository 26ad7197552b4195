"""Azure Blob archives (`az://ACCOUNT/CONTAINER/BLOB`, `https://ACCOUNT.blob.core.windows.net/
CONTAINER/BLOB`) through azure-storage-blob, credentials chosen from the pod's environment.

In order: a connection string, an account key, a SAS token (each from the model's Secret),
Azure workload identity's federated token (injected by its webhook), a service principal's
client secret; else a SAS already in an https URI, or anonymous access to a public container.
`AZURE_STORAGE_BLOB_ENDPOINT` replaces the account URL (sovereign clouds, Azurite).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import azure.core.exceptions
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.storage.blob import BlobClient, BlobServiceClient

from marserve.archive import identity
from marserve.archive.download import is_azure_blob_url
from marserve.archive.errors import ArchiveError
from marserve.archive.limits import MIB
from marserve.archive.transfer import Sink, StatusError, TransientError
from marserve.contract import AZURE_BLOB_HOST_SUFFIX

ENDPOINT_ENV: Final = "AZURE_STORAGE_BLOB_ENDPOINT"
_AZ_URI = re.compile(r"az://(?P<account>[^/]+)/(?P<container>[^/]+)/(?P<blob>.+)")
_CHUNK_BYTES = 4 * MIB
_TRANSIENT_ERRORS = (
    azure.core.exceptions.IncompleteReadError,
    azure.core.exceptions.ServiceRequestError,
    azure.core.exceptions.ServiceResponseError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class BlobAddress:
    account: str
    container: str
    blob: str
    sas: str = ""

    @classmethod
    def parse(cls, uri: str) -> BlobAddress:
        match = _AZ_URI.fullmatch(uri)
        if match:
            return cls(match["account"], match["container"], match["blob"])
        parts = urlsplit(uri)
        container, _, blob = parts.path.lstrip("/").partition("/")
        if not is_azure_blob_url(uri) or not container or not blob:
            raise ArchiveError(
                f"{uri} is not an Azure blob URI (expected az://ACCOUNT/CONTAINER/BLOB or "
                f"https://ACCOUNT{AZURE_BLOB_HOST_SUFFIX}/CONTAINER/BLOB)"
            )
        account = (parts.hostname or "").removesuffix(AZURE_BLOB_HOST_SUFFIX)
        return cls(account, container, unquote(blob), parts.query)


@dataclass(frozen=True)
class AzureBlob:
    uri: str
    env: Mapping[str, str]

    def fetch(self, sink: Sink, *, offset: int, timeout_s: float) -> None:
        options = {
            "retry_total": 0,
            "connection_timeout": timeout_s,
            "read_timeout": timeout_s,
            "max_single_get_size": _CHUNK_BYTES,
            "max_chunk_get_size": _CHUNK_BYTES,
        }
        client, kind = blob_client(BlobAddress.parse(self.uri), self.env, options)
        if sink.report:
            sink.report(f"az credentials: {kind}")
        try:
            downloader = client.download_blob(offset=offset or None, max_concurrency=1)
            with sink.receive(start=offset, total=downloader.properties.size) as receiver:
                for chunk in downloader.chunks():
                    receiver.write(chunk)
        except _TRANSIENT_ERRORS as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
        except azure.core.exceptions.ClientAuthenticationError as error:
            if error.status_code is None:  # the token request failed, not the blob's
                raise ArchiveError(f"cannot get Azure credentials: {error.message}") from error
            raise StatusError(error.status_code, str(error.reason or "")) from error
        except azure.core.exceptions.HttpResponseError as error:
            if error.status_code is None:  # a body cut short surfaces without a status
                raise TransientError(f"{type(error).__name__}: {error.message}") from error
            code = getattr(error, "error_code", None)
            reason = getattr(code, "value", code) or error.reason or ""
            raise StatusError(error.status_code, str(reason)) from error


def blob_client(
    address: BlobAddress, env: Mapping[str, str], options: Mapping[str, Any]
) -> tuple[BlobClient, str]:
    """The client for one blob and a name for how it authenticates (for the progress log)."""
    identity.check_workload_env(env, "az")
    connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection_string:
        service = BlobServiceClient.from_connection_string(connection_string, **options)
        return service.get_blob_client(address.container, address.blob), "connection string"
    credential, kind = _credential(address, env)
    account_url = env.get(ENDPOINT_ENV) or f"https://{address.account}{AZURE_BLOB_HOST_SUFFIX}"
    if address.sas and credential is None:
        account_url = f"{account_url}?{address.sas}"
    client = BlobClient(
        account_url, address.container, address.blob, credential=credential, **options
    )
    return client, kind


def _credential(address: BlobAddress, env: Mapping[str, str]) -> tuple[Any, str]:
    key, sas = env.get("AZURE_STORAGE_KEY"), env.get("AZURE_STORAGE_SAS_TOKEN")
    client_id, tenant_id = env.get("AZURE_CLIENT_ID"), env.get("AZURE_TENANT_ID")
    token_file, secret = env.get("AZURE_FEDERATED_TOKEN_FILE"), env.get("AZURE_CLIENT_SECRET")
    if key:
        return {"account_name": address.account, "account_key": key}, "account key"
    if sas:
        return sas.lstrip("?"), "SAS token"
    if client_id and tenant_id and token_file:
        federated = WorkloadIdentityCredential(
            tenant_id=tenant_id, client_id=client_id, token_file_path=token_file
        )
        return federated, "workload identity"
    if client_id and tenant_id and secret:
        return ClientSecretCredential(tenant_id, client_id, secret), "client secret"
    return None, "SAS in the URI" if address.sas else "none (anonymous requests)"
