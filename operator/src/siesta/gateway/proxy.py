"""Sending one request to one replica, and relaying its answer without buffering.

`send` tells apart failures where the replica never did any work (connection refused, or a
503 `unavailable_error`: loading or draining) from the rest: only those are retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from siesta.gateway.catalog import Endpoint

# Hop-by-hop headers (RFC 9110 7.6.1) and what the proxy sets itself.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "trailer", "upgrade", "server", "date"}
)
ERROR_PEEK_BYTES = 64 * 1024


class NotReached(Exception):
    """The request never reached the replica (connect failed): safe to send elsewhere."""


class Unavailable(Exception):
    """The replica answered 503 `unavailable_error` (loading or draining): it did no work."""


@dataclass
class Upstream:
    response: aiohttp.ClientResponse
    prefetched: bytes | None = None  # body already read (small error answers)

    def release(self) -> None:
        self.response.release()


def forward_headers(headers: Mapping[str, str], client_ip: str | None) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in _NOT_FORWARDED
    )
    if client_ip:
        previous = headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{previous}, {client_ip}" if previous else client_ip
    return out


def response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_RETURNED)


def is_unavailable(body: bytes) -> bool:
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("type") == "unavailable_error"


async def send(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    request: web.Request,
    body: bytes,
    connect_timeout: float,
    authorization: str | None = None,
) -> Upstream:
    headers = forward_headers(request.headers, request.remote)
    if authorization:  # the model servers' own key, never the client's
        headers["Authorization"] = authorization
    try:
        response = await session.request(
            request.method,
            endpoint.url + request.path_qs,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            allow_redirects=False,
        )
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
        raise NotReached(str(error)) from error
    if response.status == 503:
        prefetched = await response.content.read(ERROR_PEEK_BYTES)
        response.release()
        if is_unavailable(prefetched):
            raise Unavailable(prefetched.decode(errors="replace"))
        return Upstream(response, prefetched)
    return Upstream(response)
