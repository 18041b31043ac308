"""OpenAI-shaped error bodies: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import json
from typing import Any

JSON = "application/json"


def error_body(
    message: str, error_type: str, code: str | int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_json(
    message: str, error_type: str, code: str | int | None = None, param: str | None = None
) -> bytes:
    # ensure_ascii (the default) escapes lone surrogates a client sent, so this never raises.
    return json.dumps(error_body(message, error_type, code, param)).encode()


def sse_error_event(body: bytes) -> bytes:
    """An error sent inside an already started event stream (the status line is gone)."""
    return b"data: " + body.replace(b"\n", b" ") + b"\n\n"


def raw_error_response(
    status: int, reason: str, body: bytes, retry_after: int | None = None
) -> bytes:
    """A whole HTTP/1.1 response, for answers written before aiohttp has a request object
    (connection cap); the connection closes after it."""
    retry = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n"
        f"{retry}Connection: close\r\n\r\n"
    )
    return head.encode() + body
