"""The gateway's listening socket, with limits that hold before a request reaches a handler.

aiohttp parses requests in its `RequestHandler` (one per connection). This subclass adds
what the gateway needs in front of the internet: a cap on open connections (the one over
it gets a 503 and is closed), and errors in OpenAI's shape where aiohttp would write plain
text: a request head over the size limit gets 431, a malformed one 400. Idle connections
and request heads that dribble in are closed after `idle_timeout` (aiohttp's keep-alive
timer, which also runs from the moment a connection opens).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from siesta.gateway.errors import JSON, error_json, raw_error_response

log = logging.getLogger("siesta.gateway")


@dataclass(frozen=True)
class HttpLimits:
    max_header_size: int = 16 * 1024  # one header line, and the request line
    max_headers: int = 100
    idle_timeout: float = 30.0
    max_connections: int = 4096
    lingering_time: float = 1.0  # reading the rest of a refused body (aiohttp's default: 10 s)
    backlog: int = 1024  # a burst of connects waits in the kernel, not in SYN retries


class Connections:
    """Open connections of one listener."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class LimitedRequestHandler(RequestHandler):
    def __init__(self, manager: web.Server, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._connections = connections
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._connections.open >= self._connections.limit:
            # Refused before aiohttp sees it: no task, no parser work for this one.
            body = error_json(
                f"The gateway has {self._connections.limit} open connections; retry later.",
                "unavailable_error",
                "too_many_connections",
            )
            assert isinstance(transport, asyncio.Transport)
            transport.write(raw_error_response(503, "Service Unavailable", body, retry_after=1))
            transport.close()
            return
        self._connections.open += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._connections.open -= 1
            super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own errors (parser, unhandled), in OpenAI's shape instead of text."""
        if request.writer.output_size > 0:  # too late for a status line: drop the connection
            raise ConnectionError("the response had started; no error can be sent")
        status, code, text = _describe(status, exc)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:  # a hostile client must not fill the log
            log.debug("bad request from %s: %s", request.remote, exc)
        out = web.Response(status=status, body=error_json(text, _error_type(status), code))
        out.content_type = JSON
        out.force_close()
        return out


def _describe(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    if isinstance(exc, LineTooLong):
        return 431, "request_header_too_large", "A request header or the request line is too long."
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        return 431, "request_header_too_large", "Too many request headers."
    if isinstance(exc, HttpProcessingError) or status == 400:
        return 400, "bad_http_request", "The request is not valid HTTP/1.1."
    return status, "internal_error", "The gateway failed to handle the request."


def _error_type(status: int) -> str:
    return "invalid_request_error" if status < 500 else "server_error"


async def listen(runner: web.AppRunner, host: str, port: int, limits: HttpLimits) -> asyncio.Server:
    """Serve `runner`'s app on host:port; the caller closes the server before the runner."""
    assert runner.server is not None, "runner.setup() first"
    manager = runner.server
    connections = Connections(limits.max_connections)
    loop = asyncio.get_running_loop()

    def handler() -> LimitedRequestHandler:
        return LimitedRequestHandler(
            manager,
            connections,
            loop=loop,
            keepalive_timeout=limits.idle_timeout,
            max_line_size=limits.max_header_size,
            max_field_size=limits.max_header_size,
            max_headers=limits.max_headers,
            lingering_time=limits.lingering_time,
            access_log=None,
        )

    return await loop.create_server(handler, host, port, reuse_address=True, backlog=limits.backlog)
