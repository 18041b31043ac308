"""HTTP limits below the application: header size, header timeout and a connection cap.

uvicorn's httptools protocol buffers a request's head without a limit (a 64 MiB header is
accepted), waits forever for the head of a connection that sends nothing or dribbles it
byte by byte, and counts connections only to answer 503 in plain text. This protocol adds:

- `--max-header-bytes`: the request line and headers; more is a 431 and the connection is
  closed. Counted as the bytes arrive, so at most the limit plus one read is ever buffered.
- `--header-timeout`: from the connection's start, or a request's first byte, to the end of
  its headers; past it, a 408 and the connection is closed (slowloris).
- `--max-connections`: a connection beyond it is answered 503 at once and closed.

Idle kept-alive connections close after `--keep-alive-timeout` (uvicorn's own timer), and a
body must arrive within `--body-timeout` (api.py reads it). Every answer is OpenAI-shaped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from siesta_server.config import ServerConfig

# How long a refused connection is drained before it is closed.
LINGER_SECONDS = 1.0
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Unavailable"}


class _HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


def _answer(status: int, message: str, code: str) -> bytes:
    error_type = "unavailable_error" if status == 503 else "invalid_request_error"
    body = json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        + ("retry-after: 1\r\n" if status == 503 else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def limited_protocol(config: ServerConfig) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with this server's HTTP limits."""
    max_head = config.max_header_bytes
    head_timeout = config.header_timeout
    max_connections = config.max_connections

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # waiting for (the rest of) a request's line and headers
            self._head_raw = 0  # bytes of reads that were all head
            self._head_fields = 0  # bytes of the URL and headers parsed so far
            self._heads = 0  # requests whose headers have ended, on this connection
            self._head_timer: asyncio.TimerHandle | None = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self._refuse(
                    503,
                    f"more than {max_connections} open connections (--max-connections)",
                    "too_many_connections",
                )
                return
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            self._unset_keepalive_if_required()
            was_in_head = self._in_head
            heads_before = self._heads
            if was_in_head:
                self._arm_head_timer()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                if self._head_fields > max_head:
                    self._refuse_head()
                else:
                    self.send_400_response("Invalid HTTP request received.")
                return
            if was_in_head and self._in_head and self._heads == heads_before:
                # All of this read was head: no request's headers ended within it.
                self._head_raw += len(data)
                if self._head_raw > max_head:
                    self._refuse_head()

        def on_message_begin(self) -> None:
            self._in_head = True
            self._head_fields = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._heads += 1
            self._head_raw = 0
            self._disarm_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True
            self._head_raw = 0
            super().on_message_complete()

        def _count(self, size: int) -> None:
            self._head_fields += size
            if self._head_fields > max_head:
                raise _HeadTooLargeError

        def _refuse_head(self) -> None:
            self._refuse(
                431,
                f"the request line and headers are larger than {max_head} bytes "
                "(--max-header-bytes)",
                "request_header_fields_too_large",
            )

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                if self.cycle is not None and not self.cycle.response_complete:
                    return  # a response is still being written; the head is the next one's
                self._refuse(
                    408,
                    f"the request headers did not arrive within {head_timeout:g} s "
                    "(--header-timeout)",
                    "request_timeout",
                )

        def _refuse(self, status: int, message: str, code: str) -> None:
            """Answer, then close gently: a client still sending would otherwise get a reset
            (and lose the answer). What it sends meanwhile is read and dropped."""
            self._refused = True
            self._disarm_head_timer()
            if self.transport.is_closing():
                return
            self.transport.write(_answer(status, message, code))
            # Past twice the cap (a flood), refused connections are not kept to linger.
            if self.transport.can_write_eof() and len(self.connections) <= 2 * max_connections:
                self.transport.write_eof()
                self.loop.call_later(LINGER_SECONDS, self.transport.close)
            else:
                self.transport.close()

    return LimitedHttpToolsProtocol
