"""What a client gets back: a replica's answer relayed as it comes, or the gateway's own.

`Held` is one request's side of the conversation: once the status line is out (a relayed
answer, or the SSE keep-alives of a held stream) every later word must fit in that
response, so each reply here checks it. No routing and no counting here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from siesta.api.contract import SERVED_BY_HEADER, WAKE_RETRY_ANNOTATION, WAKE_SECONDS_HEADER
from siesta.gateway import proxy
from siesta.gateway.catalog import Catalog, ModelInfo
from siesta.gateway.errors import JSON, error_json, sse_error_event
from siesta.gateway.holding import Place, QueueFull
from siesta.gateway.inflight import Role
from siesta.gateway.metrics import GatewayMetrics
from siesta.gateway.responses import unknown_model

log = logging.getLogger("siesta.gateway")

KEEPALIVE = b": waiting for model\n\n"
REFUSAL_REASONS = {"model": "model_busy", "gateway": "held_cap", "bytes": "held_bytes"}


@dataclass
class Held:
    """One request's stay at the gateway: its place in the queue and, once started, its SSE
    stream."""

    request: web.Request
    streaming: bool
    sse: web.StreamResponse | None = None
    place: Place | None = None  # while `Forwarder.serve` runs
    status: int | None = None  # once the status line has been sent
    served_by: Role | None = None  # once a replica's answer is being relayed

    @property
    def waited(self) -> float | None:
        """Seconds it was held (the wake, as this request saw it), once it left the queue."""
        return self.place.waited if self.place is not None else None


async def keepalive(held: Held) -> None:
    """An SSE comment to a held stream (its 200 and headers go out with the first one)."""
    if held.sse is None:
        held.sse = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        await held.sse.prepare(held.request)
        held.status = 200
    await held.sse.write(KEEPALIVE)


def as_comments(role: Role, waited: float | None) -> bytes:
    """What a held stream can no longer get as headers (they went out with its first
    keep-alive), as SSE comments, which clients ignore."""
    lines = [f": {SERVED_BY_HEADER}: {role.value}\n"]
    if waited is not None:
        lines.append(f": {WAKE_SECONDS_HEADER}: {waited:.3f}\n")
    return "".join(lines).encode() + b"\n"


async def relay(
    held: Held, upstream: proxy.Upstream, role: Role, metrics: GatewayMetrics, alias: str
) -> web.StreamResponse:
    """The replica's answer, chunk by chunk; headers say who answered and how long the
    request waited for the wake (SSE comments do, when a held stream's headers went out
    already)."""
    held.served_by = role
    response = upstream.response
    try:
        if held.sse is not None:
            out = held.sse
            await out.write(as_comments(role, held.waited))
            if response.status != 200:
                body = upstream.prefetched or await response.read()
                await out.write(sse_error_event(body))
                await out.write_eof()
                return out
        else:
            headers = proxy.response_headers(response.headers)
            headers[SERVED_BY_HEADER] = role.value
            if held.waited is not None:  # it waited for a wake (as KEDA-HTTP says)
                headers[WAKE_SECONDS_HEADER] = f"{held.waited:.3f}"
            out = web.StreamResponse(
                status=response.status, reason=response.reason, headers=headers
            )
            if response.content_length is not None and upstream.prefetched is None:
                out.content_length = response.content_length
            elif upstream.prefetched is not None:
                out.content_length = len(upstream.prefetched)
            await out.prepare(held.request)
            held.status = response.status
        if upstream.prefetched is not None:
            await out.write(upstream.prefetched)
        else:
            async for chunk in response.content.iter_any():
                await out.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as error:
        # Headers are out: the only honest signal left is a broken connection.
        metrics.upstream_errors.labels(alias, "broken").inc()
        log.warning("%s: %s replica failed mid-response: %s", alias, role.value, error)
        if held.request.transport is not None:
            held.request.transport.abort()
        return held.sse or web.Response(status=502)
    finally:
        upstream.release()
    await out.write_eof()
    return out


class Refusals:
    """The gateway's own answers to a request no replica serves (503, 502, 404)."""

    def __init__(self, retry_after: int, metrics: GatewayMetrics, catalog: Catalog) -> None:
        self.retry_after = retry_after
        self.metrics = metrics
        self.catalog = catalog

    async def unavailable(
        self, held: Held, message: str, code: str, retry_after: int | None = None
    ) -> web.StreamResponse:
        body = error_json(message, "unavailable_error", code)
        if held.sse is not None:
            await held.sse.write(sse_error_event(body))
            await held.sse.write_eof()
            return held.sse
        retry = self.retry_after if retry_after is None else retry_after
        return web.Response(
            status=503, body=body, headers={"Content-Type": JSON, "Retry-After": str(retry)}
        )

    async def busy(self, model: ModelInfo, held: Held, full: QueueFull) -> web.StreamResponse:
        """No room to hold it: 503 at once, so a stampede costs no memory and no waiting."""
        self.metrics.rejected.labels(REFUSAL_REASONS[full.scope]).inc()
        self.metrics.busy.labels(model.alias, full.scope).inc()
        if full.scope == "model":
            message = (
                f"Model {model.alias!r} already holds {full.limit} requests while it wakes "
                "up; retry later."
            )
            return await self.unavailable(held, message, "model_busy")
        what = "requests" if full.scope == "gateway" else "bytes of held requests"
        return await self.unavailable(
            held, f"The gateway already holds {full.limit} {what}; retry later.", "gateway_busy"
        )

    async def failing(
        self, model: ModelInfo, held: Held, backoff: float = 0.0
    ) -> web.StreamResponse:
        """Failing replicas will not serve it, or it failed and waits out its backoff: answer
        now, with the operator's reason."""
        self.metrics.rejected.labels("model_failing").inc()
        if model.failure:
            message = f"Model {model.alias!r} is failing: {model.failure}"
            return await self.unavailable(held, message, "model_failing")
        seconds = math.ceil(backoff)
        message = (
            f"Model {model.alias!r} failed ({model.last_failure or 'see its status'}); it is "
            f"woken again in {seconds}s, or sooner after a spec change or a new value of its "
            f"{WAKE_RETRY_ANNOTATION} annotation."
        )
        return await self.unavailable(held, message, "model_failing", retry_after=seconds)

    async def not_ready(self, model: ModelInfo, held: Held) -> web.StreamResponse:
        self.metrics.timeouts.labels(model.alias).inc()
        return await self.unavailable(
            held,
            f"Model {model.alias!r} did not become ready within its wakeTimeout "
            f"({model.wake_timeout:g}s); it is still starting, retry later.",
            "model_not_ready",
        )

    async def restarting(self, held: Held) -> web.StreamResponse:
        self.metrics.rejected.labels("shutting_down").inc()
        return await self.unavailable(
            held, "The gateway is restarting; retry the request.", "gateway_restarting"
        )

    async def deleted(self, model: ModelInfo, held: Held) -> web.StreamResponse:
        if held.sse is None:
            return unknown_model(self.catalog, self.metrics, model.alias)
        gone = error_json(
            f"The model {model.alias!r} was deleted.", "invalid_request_error", "model_not_found"
        )
        await held.sse.write(sse_error_event(gone))
        await held.sse.write_eof()
        return held.sse

    async def bad_gateway(self, held: Held, message: str) -> web.StreamResponse:
        body = error_json(message, "upstream_error", "bad_gateway")
        if held.sse is not None:
            await held.sse.write(sse_error_event(body))
            await held.sse.write_eof()
            return held.sse
        return web.Response(status=502, body=body, headers={"Content-Type": JSON})
