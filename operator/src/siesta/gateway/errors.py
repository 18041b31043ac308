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
    return json.dumps(error_body(message, error_type, code, param)).encode()


def sse_error_event(body: bytes) -> bytes:
    """An error sent inside an already started event stream (the status line is gone)."""
    return b"data: " + body.replace(b"\n", b" ") + b"\n\n"
