"""s3://BUCKET/KEY: an object in Amazon S3 or an S3-compatible store.

Credentials, region and endpoint come from the AWS SDK's standard chain, exactly as the
AWS CLI finds them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, IRSA (AWS_ROLE_ARN +
AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI), the
shared config files, then the instance role. AWS_REGION picks the region, and
AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) an S3-compatible store such as MinIO. Read in
ranged GETs (parallel parts, resume) like an https:// download; each download thread keeps
one client (a client is slow to build), rebuilt when the AWS_* environment changes.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from siesta_server.source.cache import Body, ModelSourceError, RestartDownload

FORM = "s3://BUCKET/KEY"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "InvalidIdentityToken",
    "IDPRejectedClaim",
    "AllAccessDisabled",
}
# S3 answers 403 instead of 404 for a missing key when the caller may not list the bucket
# (the usual GetObject-only role): the two cannot be told apart, so both are named.
_DENIED_OR_MISSING = {"AccessDenied", "403"}
DENIED_OR_MISSING = (
    "access denied, or the key does not exist (without s3:ListBucket S3 answers 403 for a "
    "missing key)"
)
CREDENTIALS_HINT = (
    "the credentials found (IRSA or Pod Identity role, AWS_* variables, instance role) "
    "need s3:GetObject on this object"
)


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def open(self, offset: int, end: int | None = None) -> Body:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if end is not None:
            request["Range"] = f"bytes={offset}-{end - 1}"
        elif offset:
            request["Range"] = f"bytes={offset}-"
        try:
            reply = _client().get_object(**request)
        except Exception as error:
            _forget_client()  # the next attempt starts from fresh credentials
            raise self._classify(error) from None
        start, total, body_end = offset, None, None
        match = _CONTENT_RANGE.match(reply.get("ContentRange") or "")
        if match:
            start, body_end = int(match.group(1)), int(match.group(2)) + 1
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            start = 0
            length = reply.get("ContentLength")
            total = body_end = int(length) if length is not None else None
        stream = reply["Body"]
        return Body(
            stream=_Stream(stream), offset=start, total=total, close=stream.close, end=body_end
        )

    def _classify(self, error: Exception) -> Exception:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
        )

        where = self.describe()
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            message = details.get("Message") or code
            if code in _MISSING:
                return ModelSourceError(f"cannot download {where}: no such object ({code})")
            if code in _DENIED_OR_MISSING:
                return ModelSourceError(
                    f"cannot download {where}: {DENIED_OR_MISSING}; bucket {self.bucket!r}, "
                    f"key {self.key!r} ({code}: {message}; {CREDENTIALS_HINT})"
                )
            if code in _DENIED:
                return ModelSourceError(
                    f"cannot download {where}: {code}: {message} ({CREDENTIALS_HINT})"
                )
            if code in {"InvalidRange", "416"}:
                return RestartDownload("the store cannot resume at this offset")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if 400 <= int(status) < 500 and code not in {"SlowDown", "RequestTimeout"}:
                return ModelSourceError(f"cannot download {where}: {code}: {message}")
            return OSError(f"{code}: {message}")
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return ModelSourceError(
                f"cannot download {where}: no usable AWS credentials ({error}); give the pod "
                "a ServiceAccount with an IRSA role or Pod Identity association, or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if isinstance(error, NoRegionError):
            return ModelSourceError(f"cannot download {where}: set AWS_REGION")
        # Connection and credential-provider failures, garbled replies: the store or STS
        # may come back, and after a few attempts the download fails with this message.
        kind = "" if isinstance(error, BotoCoreError) else " (unexpected)"
        return OSError(f"{type(error).__name__}{kind}: {error}")


class _Stream:
    """The response body, with the SDK's read errors turned into OSError (retryable)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            data: bytes = self._body.read(size)
        except BotoCoreError as error:
            raise OSError(f"{type(error).__name__}: {error}") from error
        return data


def parse(uri: str) -> S3Object:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not _BUCKET.match(bucket) or not key or key.endswith("/"):
        raise ModelSourceError(
            f"malformed S3 URI {uri!r}: expected {FORM} (an object, not a prefix)"
        )
    return S3Object(bucket, key)


def file_name(uri: str) -> str:
    return PurePosixPath(parse(uri).key).name


_clients = threading.local()


def _forget_client() -> None:
    _clients.__dict__.clear()


def _client() -> Any:
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    if getattr(_clients, "environment", None) != environment:
        _clients.client = _new_client()
        _clients.environment = environment
    return _clients.client


def _new_client() -> Any:
    import boto3
    from botocore.config import Config

    # A fresh session re-reads the environment and the role credentials.
    session = boto3.session.Session()
    config = Config(
        connect_timeout=30,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        user_agent_extra="siesta-server",
    )
    return session.client("s3", config=config)
