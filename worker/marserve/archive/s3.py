"""Signed S3 GET requests (AWS Signature Version 4) with the standard library only.

The init container fetches `s3://BUCKET/KEY` archives; pulling boto3 into the worker image for
one GET is not worth its size. Credentials and endpoint come from AWS's standard variables.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlsplit

from marserve.archive.errors import ArchiveError

EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom to reach S3; built once from the environment."""

    region: str
    endpoint: str | None
    credentials: Credentials | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings:
        key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        credentials = (
            Credentials(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)
            if key_id and secret
            else None
        )
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            credentials=credentials,
        )


def object_url(uri: str, settings: S3Settings) -> str:
    """The HTTPS URL of `s3://BUCKET/KEY`: path style on a custom endpoint, else virtual host."""
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise ArchiveError(f"{uri} is not an S3 object URI (expected s3://BUCKET/KEY)")
    encoded_key = quote(key, safe="/~")
    if settings.endpoint:
        return f"{settings.endpoint.rstrip('/')}/{bucket}/{encoded_key}"
    if "." in bucket:
        return f"https://s3.{settings.region}.amazonaws.com/{bucket}/{encoded_key}"
    return f"https://{bucket}.s3.{settings.region}.amazonaws.com/{encoded_key}"


def signed_get_headers(
    url: str,
    settings: S3Settings,
    *,
    now: datetime,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers for an S3 GET of `url` at `now` (UTC), `extra` ones (e.g. Range) signed too.

    Without credentials the request goes out unsigned, as for a public bucket.
    """
    if settings.credentials is None:
        return dict(extra or {})
    headers = {
        **(extra or {}),
        "Host": urlsplit(url).netloc,
        "x-amz-content-sha256": EMPTY_PAYLOAD_SHA256,
        "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
    }
    if settings.credentials.session_token:
        headers["x-amz-security-token"] = settings.credentials.session_token
    headers["Authorization"] = authorization(
        method="GET",
        url=url,
        headers=headers,
        credentials=settings.credentials,
        region=settings.region,
    )
    return headers


def authorization(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    service: str = "s3",
) -> str:
    """The `Authorization` header value signing `headers` (which must hold x-amz-date)."""
    lowered = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    amz_date = lowered["x-amz-date"]
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    signed_names = ";".join(sorted(lowered))
    canonical_request = "\n".join(
        [
            method,
            _canonical_path(url),
            _canonical_query(url),
            "".join(f"{name}:{lowered[name]}\n" for name in sorted(lowered)),
            signed_names,
            lowered.get("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_access_key}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope},"
        f"SignedHeaders={signed_names},Signature={signature}"
    )


def _canonical_path(url: str) -> str:
    # The URL's path is already encoded once; S3 signs it as sent (no second encoding).
    return urlsplit(url).path or "/"


def _canonical_query(url: str) -> str:
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    encoded = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)
