"""http:// and https:// objects, read in byte ranges (parallel parts, resume) with Range."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.client import HTTPMessage
from pathlib import PurePosixPath
from typing import IO
from urllib.parse import unquote, urlparse

from siesta_server.source.cache import (
    CONNECT_TIMEOUT_SECONDS,
    Body,
    ModelSourceError,
    RestartDownload,
)

USER_AGENT = "siesta-server"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def file_name(uri: str) -> str:
    return PurePosixPath(unquote(urlparse(uri).path)).name


@dataclass(frozen=True)
class HttpObject:
    url: str
    # Sent to the first host only, never along a redirect (a token must not reach a CDN).
    secret_headers: Mapping[str, str] = field(default_factory=dict)
    shown_as: str | None = None
    # A response header (on the reply or a redirect before it) holding the object's SHA-256.
    digest_header: str | None = None
    # What to add to a 4xx message, by status code (e.g. where a token comes from).
    hints: Mapping[int, str] = field(default_factory=dict)

    def describe(self) -> str:
        return self.shown_as or self.url

    def _hint(self, code: int) -> str:
        hint = self.hints.get(code) or _GENERIC_HINTS.get(code)
        return f" ({hint})" if hint else ""

    def _vouched_digest(self, replies: list[Message]) -> str | None:
        if self.digest_header is None:
            return None
        for headers in replies:
            value = (headers.get(self.digest_header) or "").removeprefix("W/").strip('"')
            if len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
                return value.lower()
        return None

    def open(self, offset: int, end: int | None = None) -> Body:
        request = urllib.request.Request(self.url, headers={"User-Agent": USER_AGENT})
        for name, value in self.secret_headers.items():
            request.add_unredirected_header(name, value)
        if end is not None:
            request.add_header("Range", f"bytes={offset}-{end - 1}")
        elif offset:
            request.add_header("Range", f"bytes={offset}-")
        redirects = _RecordingRedirects()
        opener = urllib.request.build_opener(redirects)
        try:
            response = opener.open(request, timeout=CONNECT_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            if error.code == 416 and (offset or end is not None):
                raise RestartDownload(f"the server cannot resume at byte {offset}") from None
            if error.code < 500 and error.code != 429:
                raise ModelSourceError(
                    f"cannot download {self.describe()}: HTTP {error.code} {error.reason}"
                    + self._hint(error.code)
                ) from None
            raise
        except http.client.HTTPException as error:
            raise OSError(f"HTTP protocol error: {error}") from error
        length = response.headers.get("Content-Length")
        start, total, body_end = 0, None, None
        ranged = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
        if response.status == 206 and ranged:
            start, body_end = int(ranged.group(1)), int(ranged.group(2)) + 1
            total = int(ranged.group(3)) if ranged.group(3) != "*" else None
        elif response.status == 206:  # a resume without Content-Range: trust our offset
            start = offset
        if total is None and length is not None and (response.status != 206 or end is None):
            total = start + int(length)
            body_end = total
        return Body(
            stream=_Stream(response),
            offset=start,
            total=total,
            sha256=self._vouched_digest([*redirects.seen, response.headers]),
            close=response.close,
            end=body_end,
        )


class _Stream:
    """The response body, with http.client's IncompleteRead & co. turned into OSError (retryable)."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    def read(self, size: int = -1) -> bytes:
        try:
            return self._response.read(size)
        except http.client.HTTPException as error:
            raise OSError(f"HTTP protocol error: {error!r}") from error


_GENERIC_HINTS = {
    401: "the server wants credentials",
    403: "access denied",
    404: "no such file",
}


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects as usual and keeps the headers of each redirect response."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        self.seen.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
