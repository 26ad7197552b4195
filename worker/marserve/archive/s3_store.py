"""`s3://BUCKET/KEY` archives through boto3, with AWS's own credential chain.

The chain reads what the pod has: static keys from the model's Secret (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), IRSA's web identity
(`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), EKS Pod Identity or the node's role. With none
of them the GET goes out unsigned, as for a public bucket. `AWS_REGION` and
`AWS_ENDPOINT_URL(_S3)` (MinIO and other S3-compatible stores) are read by boto3 itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore import UNSIGNED
from botocore.config import Config

from marserve.archive import identity
from marserve.archive.errors import ArchiveError
from marserve.archive.progress import Report
from marserve.archive.transfer import CHUNK_BYTES, Sink, StatusError, TransientError

_URI = re.compile(r"s3://(?P<bucket>[^/]+)/(?P<key>.+)")
_CONTENT_RANGE = re.compile(r"bytes (?P<start>\d+)-\d+/(?P<total>\d+)")
_TRANSIENT_ERRORS = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)


@dataclass(frozen=True)
class S3Object:
    uri: str
    env: Mapping[str, str]

    def fetch(self, sink: Sink, *, offset: int, timeout_s: float) -> None:
        match = _URI.fullmatch(self.uri)
        if match is None:
            raise ArchiveError(f"{self.uri} is not an S3 object URI (expected s3://BUCKET/KEY)")
        client = _client(self.env, timeout_s=timeout_s, report=sink.report)
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = client.get_object(Bucket=match["bucket"], Key=match["key"], **ranged)
            start, total = _extent(response)
            with sink.receive(start=start, total=total) as receiver:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    receiver.write(chunk)
        except botocore.exceptions.ClientError as error:
            raise _status_error(error) from error
        except _TRANSIENT_ERRORS as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
        except botocore.exceptions.BotoCoreError as error:
            raise ArchiveError(f"cannot read {self.uri}: {error}") from error


def signing_method(session: boto3.session.Session) -> str | None:
    """How boto3's chain signs requests (`env`, `assume-role-with-web-identity`, ...), None
    when it finds no credentials and requests go out unsigned."""
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as error:
        raise ArchiveError(f"cannot load AWS credentials: {error}") from error
    return None if credentials is None else str(credentials.method)


def _client(env: Mapping[str, str], *, timeout_s: float, report: Report | None) -> Any:
    identity.check_workload_env(env, "s3")
    session = boto3.session.Session()
    method = signing_method(session)
    if report:
        report(f"s3 credentials: {method or 'none (unsigned requests)'}")
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": 1},
        signature_version=UNSIGNED if method is None else None,
    )
    return session.client("s3", config=config)


def _extent(response: Mapping[str, Any]) -> tuple[int, int | None]:
    """Where the body starts and the object's full size, from a 200 or a 206 answer."""
    ranged = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange") or ""))
    if ranged:
        return int(ranged["start"]), int(ranged["total"])
    length = response.get("ContentLength")
    return 0, None if length is None else int(length)


def _status_error(error: botocore.exceptions.ClientError) -> StatusError | ArchiveError:
    details = error.response.get("Error") or {}
    status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if status is None:
        return ArchiveError(f"S3 refused the request: {details.get('Message') or error}")
    return StatusError(int(status), str(details.get("Code") or ""))
