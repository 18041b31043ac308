"""The gateway's HTTP side: OpenAI routes, API keys, /v1/models, /metrics and health.

Inference requests are parsed here (body limit, `model` field, alias lookup) and handed to
`forwarding.Forwarder`, which forwards or holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from siesta.api.contract import ModelKey
from siesta.gateway.auth import KeyFile, KeyScope
from siesta.gateway.catalog import Catalog, Route
from siesta.gateway.cors import Cors
from siesta.gateway.forwarding import Forwarder
from siesta.gateway.metrics import GatewayMetrics
from siesta.gateway.ratelimit import RateLimiter
from siesta.gateway.replies import Held
from siesta.gateway.responses import error_response, unknown_model
from siesta.gateway.settings import GatewaySettings

log = logging.getLogger("siesta.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class Gateway:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.catalog = Catalog(on_endpoints=self._endpoints_changed)
        self.forwarder = Forwarder(settings, self.metrics, self.catalog)
        self.keys = KeyFile(settings.api_keys_file) if settings.api_keys_file else None
        self.limiter = RateLimiter()
        self.active_handlers = 0
        self._no_handlers = asyncio.Event()  # set while active_handlers is 0 (drain waits)
        self._no_handlers.set()
        self.synced: set[str] = set()
        self.expected_syncs: set[str] = set()
        self.app = self._build_app()

    # --- wiring -------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body, middlewares=[openai_errors])
        for path in INFERENCE_PATHS:
            app.router.add_post(path, self.handle_inference)
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_get("/v1/models/{alias:.+}", self.handle_model)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/readyz", self.handle_readyz)
        app.on_cleanup.append(self._close_session)
        if self.settings.cors_origins:
            Cors(self.settings.cors_origins).install(app)
        return app

    async def _close_session(self, _: web.Application) -> None:
        await self.forwarder.close()

    def _endpoints_changed(self, key: ModelKey) -> None:
        self.forwarder.endpoints_changed(key)

    @property
    def draining(self) -> bool:
        return self.forwarder.draining

    def mark_synced(self, name: str) -> None:
        self.synced.add(name)

    # --- plain routes -------------------------------------------------------------------

    async def handle_metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def handle_healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def handle_readyz(self, _: web.Request) -> web.Response:
        missing = sorted(self.expected_syncs - self.synced)
        if self.draining or missing:
            reason = (
                "draining"
                if self.draining
                else f"waiting for the first list of {', '.join(missing)}"
            )
            return web.json_response({"status": "unavailable", "reason": reason}, status=503)
        return web.json_response({"status": "ok"})

    def _model_entry(self, name: str, route: Route) -> dict[str, Any]:
        """An OpenAI model object; an adapter carries its base model's state (`parent`)."""
        model = route.model
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": _epoch(model.created),
            "owned_by": "siesta",
        }
        if route.served != model.alias:
            qualified = name.startswith(f"{model.namespace}/")
            entry["parent"] = f"{model.namespace}/{model.alias}" if qualified else model.alias
        holder = self.catalog.holder(model)
        return entry | {
            "siesta": {
                "namespace": model.namespace,
                "name": model.name,
                "phase": model.phase,
                "replicas": model.replicas,
                "readyReplicas": model.ready_replicas,
                "readyEndpoints": len(self.catalog.endpoints(model.key)),
                "bridge": model.has_bridge,
                "readyBridgeEndpoints": len(self.catalog.bridge_endpoints(model.key)),
                "queued": self.forwarder.pending(model.key),
                "bareNameHeldBy": f"{holder.namespace}/{holder.name}" if holder else None,
            },
        }

    async def handle_models(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        data = [
            self._model_entry(name, route)
            for name, route in self.catalog.listing()
            if caller is None or caller.reaches(route.model.namespace, _names(name, route))
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_model(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        name = request.match_info["alias"]
        route = self.catalog.route(name)
        if route is None:
            return self._unknown_model(name)
        if (denied := self._out_of_scope(caller, name, route)) is not None:
            return denied
        return web.json_response(self._model_entry(name, route))

    # --- errors -------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> KeyScope | web.Response | None:
        """The caller's key (None: keys are off), or a 401."""
        if self.keys is None:
            return None
        scope = self.keys.find(request.headers.get("Authorization"))
        if scope is not None:
            return scope
        self.metrics.rejected.labels("unauthorized").inc()
        return error_response(
            401, "Missing or invalid API key.", "invalid_request_error", "invalid_api_key"
        )

    def _out_of_scope(
        self, caller: KeyScope | None, name: str, route: Route
    ) -> web.Response | None:
        if caller is None or caller.reaches(route.model.namespace, _names(name, route)):
            return None
        self.metrics.rejected.labels("forbidden").inc()
        return error_response(
            403,
            f"This API key may not use the model {name!r}.",
            "permission_error",
            "model_not_allowed",
            param="model",
        )

    def _over_rate(self, caller: KeyScope | None) -> web.Response | None:
        if caller is None or caller.rate is None:
            return None
        wait = self.limiter.take(caller.secret, caller.rate, asyncio.get_running_loop().time())
        if not wait:
            return None
        self.metrics.rejected.labels("rate_limited").inc()
        rate = caller.rate
        return error_response(
            429,
            f"This API key may send {rate.count} requests per {rate.seconds:g}s; retry later.",
            "rate_limit_error",
            "rate_limit_exceeded",
            retry_after=math.ceil(wait),
        )

    def _unknown_model(self, alias: str) -> web.Response:
        return unknown_model(self.catalog, self.metrics, alias)

    # --- inference ----------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The body, or a 413 (too large) or 408 (too slow)."""
        try:
            if request.content.is_eof():  # it came with the head: no timer to arm
                return await request.read()
            async with asyncio.timeout(self.settings.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected.labels("body_too_large").inc()
            return error_response(
                413,
                f"Request body larger than {self.settings.max_body} bytes.",
                "invalid_request_error",
                "request_too_large",
            )
        except TimeoutError:
            self.metrics.rejected.labels("body_timeout").inc()
            late = error_response(
                408,
                f"The request body did not arrive within {self.settings.body_timeout:g}s.",
                "invalid_request_error",
                "request_timeout",
            )
            late.force_close()  # the rest of the body is not worth waiting for
            return late

    async def handle_inference(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        if (limited := self._over_rate(caller)) is not None:
            return limited  # before the body is read: refusing costs nothing
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            alias, streaming = read_target(body)
        except ValueError as error:
            self.metrics.rejected.labels("bad_request").inc()
            return error_response(
                400, str(error), "invalid_request_error", "invalid_request", param="model"
            )
        route = self.catalog.route(alias)
        if route is None:
            return self._unknown_model(alias)
        if (denied := self._out_of_scope(caller, alias, route)) is not None:
            return denied
        model = route.model
        if alias != route.served:  # NAMESPACE/NAME: the servers know the bare name
            body = with_model(body, route.served)
        held = Held(request, streaming=streaming)
        self.active_handlers += 1
        self._no_handlers.clear()
        try:
            response = await self.forwarder.serve(model, held, body)
        except asyncio.CancelledError:
            # The client went away: before an answer (499), or while it was being streamed
            # (a client may hang up right after the last event it needs).
            self._count(model.alias, held, held.status or 499)
            raise
        finally:
            self.active_handlers -= 1
            if not self.active_handlers:
                self._no_handlers.set()
        self._count(model.alias, held, response.status)
        return response

    def _count(self, alias: str, held: Held, status: int) -> None:
        served_by = held.served_by or "gateway"  # no replica answered: the gateway did
        self.metrics.requests.labels(alias, str(status), served_by).inc()

    # --- shutdown -----------------------------------------------------------------------

    async def drain(self) -> None:
        """Answer held requests with a retryable 503, let forwarded ones finish."""
        self.forwarder.start_draining()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_handlers.wait(), self.settings.drain_timeout)


def read_target(body: bytes) -> tuple[str, bool]:
    """The `model` and `stream` fields of a request body. The parsed tree is dropped here:
    a held request keeps only its bytes (a 4 MiB body of empty objects parses to ~100 MB)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ValueError("The request body is JSON nested too deeply.") from None
    except ValueError:  # also bytes that are not UTF-8
        raise ValueError("The request body must be a JSON object.") from None
    alias = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(alias, str):
        raise ValueError("The request body must be JSON with a string field 'model'.")
    return alias, payload.get("stream") is True


def _names(name: str, route: Route) -> tuple[str, ...]:
    """Every name a key's `models=` may list for this route."""
    model = route.model
    ns = model.namespace
    return (name, route.served, f"{ns}/{route.served}", model.name, f"{ns}/{model.name}")


def with_model(body: bytes, name: str) -> bytes:
    """The body with its `model` field set to `name` (only for qualified names)."""
    payload = json.loads(body)
    payload["model"] = name
    return json.dumps(payload).encode()


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers (404 route, 405 method, ...) and crashes as OpenAI errors."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.lower().replace(" ", "_")
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        return error_response(error.status, error.reason + ".", kind, code, headers=error.headers)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "The gateway failed.", "server_error", "internal_error")


def _epoch(timestamp: str) -> int:
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
