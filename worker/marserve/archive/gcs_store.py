"""`gs://BUCKET/OBJECT` archives through google-cloud-storage, with Google's credential chain.

The chain reads what the pod has: a service-account JSON key file named by
`GOOGLE_APPLICATION_CREDENTIALS` (mounted from the model's Secret), or GKE workload identity
through the metadata server. With neither, requests go out anonymously, as for a public object.
`STORAGE_EMULATOR_HOST` points the client at another endpoint, as the library documents.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.api_core.exceptions
import google.auth
import google.auth.exceptions
import requests.exceptions
import urllib3.exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage

from marserve.archive import identity
from marserve.archive.errors import ArchiveError
from marserve.archive.transfer import Sink, StatusError, TransientError

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_URI = re.compile(r"gs://(?P<bucket>[^/]+)/(?P<name>.+)")
_TRANSIENT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    google.auth.exceptions.TransportError,
    ConnectionError,
    TimeoutError,
)
_KINDS = {
    "google.oauth2.service_account": "service account key",
    "google.auth.compute_engine.credentials": "metadata server (workload identity)",
    "google.auth.external_account": "workload identity federation",
    "google.auth.identity_pool": "workload identity federation",
}


@dataclass(frozen=True)
class GcsObject:
    uri: str
    env: Mapping[str, str]

    def fetch(self, sink: Sink, *, offset: int, timeout_s: float) -> None:
        match = _URI.fullmatch(self.uri)
        if match is None:
            raise ArchiveError(f"{self.uri} is not a GCS object URI (expected gs://BUCKET/OBJECT)")
        credentials, project, kind = google_credentials(self.env)
        if sink.report:
            sink.report(f"gs credentials: {kind}")
        try:
            client = storage.Client(project=project or "<none>", credentials=credentials)
            bucket = client.bucket(match["bucket"])
            # The metadata names the size (checked before any byte arrives) and the generation,
            # which pins every attempt's bytes to the same version of the object.
            found = bucket.get_blob(match["name"], timeout=timeout_s, retry=None)
            if found is None:
                raise StatusError(404, "NotFound")
            blob = bucket.blob(match["name"], generation=found.generation)
            with sink.receive(start=offset, total=found.size) as receiver:
                blob.download_to_file(
                    receiver,
                    start=offset or None,
                    raw_download=True,
                    checksum=None,
                    timeout=timeout_s,
                    retry=None,
                )
        except google.api_core.exceptions.GoogleAPICallError as error:
            raise StatusError(int(error.code or 0), type(error).__name__) from error
        except google.auth.exceptions.RefreshError as error:
            raise ArchiveError(f"cannot get Google credentials: {error}") from error
        except _TRANSIENT_ERRORS as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error


def google_credentials(env: Mapping[str, str]) -> tuple[Credentials, str | None, str]:
    """The credentials Google's chain finds, their project and a name for their kind;
    anonymous ones when it finds none (unless workload identity was asked for)."""
    try:
        credentials, project = google.auth.default(scopes=[READ_ONLY_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as error:
        if identity.wants_workload_identity(env):
            raise ArchiveError(
                "workload identity for gs:// found no metadata server credentials; annotate the "
                "model's service account with iam.gke.io/gcp-service-account and enable GKE "
                "workload identity on the node pool"
            ) from error
        anonymous: Credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return anonymous, None, "none (anonymous requests)"
    return credentials, project, _KINDS.get(type(credentials).__module__, _name(credentials))


def _name(credentials: Any) -> str:
    return f"{type(credentials).__module__}.{type(credentials).__name__}"
