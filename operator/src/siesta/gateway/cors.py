"""CORS: browser apps on the origins the operator of the gateway allows (none by default).

An allowed origin is echoed (never `*`), so a browser may send credentials (cookies, or the
`Authorization` header with `credentials: "include"`); `Vary: Origin` keeps caches apart.
Preflights (OPTIONS) are answered here, before API keys (browsers send none on them). The
headers are added when a response is prepared, so streamed answers (SSE) carry them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from siesta.api.contract import SERVED_BY_HEADER, WAKE_SECONDS_HEADER
from siesta.gateway.responses import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METHODS = "GET, POST, OPTIONS"
# What a page may read of an answer: when to retry, and who answered after how long a wake.
EXPOSED = f"Retry-After, Content-Type, {SERVED_BY_HEADER}, {WAKE_SECONDS_HEADER}"
MAX_AGE = "600"  # seconds a browser may cache a preflight


class Cors:
    def __init__(self, origins: Collection[str]) -> None:
        self.origins = frozenset(origins)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def install(self, app: web.Application) -> None:
        app.middlewares.insert(0, self.preflight)
        app.on_response_prepare.append(self.add_headers)

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return await handler(request)
        origin = request.headers.get("Origin")
        if not self.allows(origin):
            return error_response(
                403,
                f"The origin {origin!r} may not call this API (gateway setting cors-origins).",
                "invalid_request_error",
                "cors_origin_not_allowed",
            )
        headers = {
            "Access-Control-Allow-Methods": METHODS,
            "Access-Control-Max-Age": MAX_AGE,
        }
        if requested := request.headers.get("Access-Control-Request-Headers"):
            headers["Access-Control-Allow-Headers"] = requested
        return web.Response(status=204, headers=headers)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        response.headers.add("Vary", "Origin")
        if not self.allows(origin):
            return
        assert origin is not None
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
