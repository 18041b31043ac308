"""Sending one request to one replica, and relaying its answer without buffering.

`send` tells apart failures where the replica never did any work (connection refused, or a
503 `unavailable_error`: loading, draining, or busy) from the rest: only those are retried.
A busy replica's answer is passed on when no other replica is free (not held as "loading").
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


class Busy(Exception):
    """The replica answered 503 because its queue is full: it did no work, and its answer
    (with its Retry-After) is what the client gets when no other replica has room."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__("replica busy")
        self.upstream = upstream


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


def unavailable_message(body: bytes) -> str | None:
    """The message of a 503 `unavailable_error` body, else None."""
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(error, dict) or error.get("type") != "unavailable_error":
        return None
    return str(error.get("message") or "")


def is_busy(message: str) -> bool:
    """siesta-server's queue-full 503 ("server busy: ..."; llama-server says "busy" too),
    told apart from loading or draining, which the replica gets over by itself."""
    return "busy" in message.lower()


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
        message = unavailable_message(prefetched)
        if message is not None and is_busy(message):
            raise Busy(Upstream(response, prefetched))
        if message is not None:
            raise Unavailable(message)
        return Upstream(response, prefetched)
    return Upstream(response)
