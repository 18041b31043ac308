"""The path of one inference request: forward at once, or hold until a replica is ready.

With a ready replica the request is forwarded at once (fewest in flight first). Without
one it is held in the model's bounded queue, the demand Lease tells the operator to wake
the model, and the request goes out, in arrival order, as soon as a replica becomes ready,
or gets a 503 with Retry-After after the model's wakeTimeout. Only failures where the
replica did no work are retried (see `proxy`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from siesta.api.contract import WAKE_RETRY_ANNOTATION, ModelKey
from siesta.gateway import proxy
from siesta.gateway.auth import UpstreamKey
from siesta.gateway.catalog import Catalog, Endpoint, ModelInfo
from siesta.gateway.demand import DemandTracker, warm_interval
from siesta.gateway.errors import JSON, error_json, sse_error_event
from siesta.gateway.holding import HoldQueues, Place, QueueFull
from siesta.gateway.inflight import InFlight
from siesta.gateway.metrics import GatewayMetrics
from siesta.gateway.responses import unknown_model
from siesta.gateway.routing import Router
from siesta.gateway.settings import GatewaySettings

log = logging.getLogger("siesta.gateway")

KEEPALIVE = b": waiting for model\n\n"
WAKE_SECONDS_HEADER = "X-Siesta-Wake-Seconds"
"""On a response whose request was held while its model woke: the seconds it was held."""
REFUSAL_REASONS = {"model": "model_busy", "gateway": "held_cap", "bytes": "held_bytes"}
UPSTREAM_KEEPALIVE_SECONDS = 3.0  # below uvicorn's 5 s idle timeout: never reuse a closing socket


@dataclass
class Held:
    """One request's stay at the gateway: its place in the queue and, once started, its SSE
    stream."""

    request: web.Request
    streaming: bool
    sse: web.StreamResponse | None = None
    place: Place | None = None  # while `Forwarder.serve` runs
    status: int | None = None  # once the status line has been sent

    @property
    def waited(self) -> float | None:
        """Seconds it was held (the wake, as this request saw it), once it left the queue."""
        return self.place.waited if self.place is not None else None


class Forwarder:
    def __init__(
        self, settings: GatewaySettings, metrics: GatewayMetrics, catalog: Catalog
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.catalog = catalog
        self.in_flight = InFlight()  # the one count: routing, demand and the metric read it
        self.in_flight.on_change = self._in_flight_changed
        self.router = Router(self.in_flight)
        self.queues = HoldQueues(settings.queue_size, settings.max_held, settings.max_held_bytes)
        self.demand = DemandTracker()
        self.draining = False
        self.kick_demand: Callable[[ModelKey], None] = lambda model: None  # the demand writer's
        self._session: aiohttp.ClientSession | None = None
        self.upstream_key = (
            UpstreamKey(settings.upstream_key_file) if settings.upstream_key_file else None
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS, ttl_dns_cache=None
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def endpoints_changed(self, key: ModelKey) -> None:
        self.router.forget(asyncio.get_running_loop().time())  # endpoints come and go
        self.queues.wake(key)

    def start_draining(self) -> None:
        self.draining = True
        self.queues.wake_all()

    def pending(self, key: ModelKey) -> int:
        return self.queues.pending(key)

    async def serve(self, model: ModelInfo, held: Held, body: bytes) -> web.StreamResponse:
        backoff = model.wake_backoff(time.time())
        if (model.failure or backoff) and not self.catalog.endpoints(model.key):
            # Not counted as demand: a request no replica can serve must not keep it awake,
            # and one for a model that failed must not wake it before its backoff ends.
            return await self._failing(model, held, backoff)
        self.demand.seen(model.key, time.time(), warm_interval(model.idle_timeout))
        on_change = functools.partial(self._place_changed, model)
        async with self.queues.place(model.key, on_change) as place:
            held.place = place
            return await self._forward_or_hold(model, held, place, body)

    async def _forward_or_hold(
        self, model: ModelInfo, held: Held, place: Place, body: bytes
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        deadline = arrival + model.wake_timeout
        next_keepalive = arrival + self.settings.keepalive_interval
        while True:
            if self.draining and not self.catalog.endpoints(model.key):
                self.metrics.rejected.labels("shutting_down").inc()
                return await self._unavailable(
                    held, "The gateway is restarting; retry the request.", "gateway_restarting"
                )
            now = loop.time()
            endpoints = self.catalog.endpoints(model.key)
            endpoint = self.router.choose(endpoints, now)
            if endpoint is not None:
                place.step_out()  # not waiting while it is tried
                result = await self._try(model, held, place, endpoint, body)
                if result is not None:
                    return result
                place.step_back()  # not reached or unavailable: it keeps its place
                continue
            if model.failure:
                place.leave("failing")
                return await self._failing(model, held)
            if not place.held:
                try:
                    place.take(len(body), model.max_held, now)
                except QueueFull as full:
                    return await self._busy(model, held, full)
            if now >= deadline:
                self.metrics.timeouts.labels(model.alias).inc()
                place.leave("timeout")
                return await self._unavailable(
                    held,
                    f"Model {model.alias!r} did not become ready within its wakeTimeout "
                    f"({model.wake_timeout:g}s); it is still starting, retry later.",
                    "model_not_ready",
                )
            wake_at = min(deadline, next_keepalive)
            cooldown_end = self.router.next_cooldown_end(endpoints, now)
            if cooldown_end is not None:
                wake_at = min(wake_at, cooldown_end)
            await place.wait(wake_at - now)
            if held.streaming and loop.time() >= next_keepalive:
                await self._keepalive(held)
                next_keepalive = loop.time() + self.settings.keepalive_interval
            current = self.catalog.model_by_key(model.key)
            if current is None:  # deleted while its requests were held
                place.leave("abandoned")
                return await self._deleted(model, held)
            model = current  # wakeTimeout may have changed

    async def _busy(self, model: ModelInfo, held: Held, full: QueueFull) -> web.StreamResponse:
        """No room to hold it: 503 at once, so a stampede costs no memory and no waiting."""
        self.metrics.rejected.labels(REFUSAL_REASONS[full.scope]).inc()
        self.metrics.busy.labels(model.alias, full.scope).inc()
        if full.scope == "model":
            message = (
                f"Model {model.alias!r} already holds {full.limit} requests while it wakes "
                "up; retry later."
            )
            return await self._unavailable(held, message, "model_busy")
        what = "requests" if full.scope == "gateway" else "bytes of held requests"
        return await self._unavailable(
            held, f"The gateway already holds {full.limit} {what}; retry later.", "gateway_busy"
        )

    async def _deleted(self, model: ModelInfo, held: Held) -> web.StreamResponse:
        if held.sse is None:
            return unknown_model(self.catalog, self.metrics, model.alias)
        gone = error_json(
            f"The model {model.alias!r} was deleted.", "invalid_request_error", "model_not_found"
        )
        await held.sse.write(sse_error_event(gone))
        await held.sse.write_eof()
        return held.sse

    async def _try(
        self, model: ModelInfo, held: Held, place: Place, endpoint: Endpoint, body: bytes
    ) -> web.StreamResponse | None:
        """Forward to one replica; None when it never did the work (try elsewhere)."""
        key = model.key
        loop = asyncio.get_running_loop()
        attempt = loop.time()
        with self.in_flight.counting(key, model.alias, endpoint.key):
            try:
                upstream = await proxy.send(
                    self.session,
                    endpoint,
                    held.request,
                    body,
                    self.settings.connect_timeout,
                    self.upstream_key.authorization() if self.upstream_key else None,
                )
            except proxy.Busy as busy:
                self.metrics.upstream_errors.labels(model.alias, "busy").inc()
                self.router.cool(endpoint, loop.time())
                if self.router.choose(self.catalog.endpoints(key), loop.time()) is not None:
                    busy.upstream.release()
                    return None  # another replica may have room: it did no work here
                place.leave("forwarded", attempt)
                return await self._relay(model, held, busy.upstream)
            except (proxy.NotReached, proxy.Unavailable) as error:
                kind = "connect" if isinstance(error, proxy.NotReached) else "unavailable"
                log.info("%s: replica %s %s; trying again", model.alias, endpoint.url, kind)
                self.metrics.upstream_errors.labels(model.alias, kind).inc()
                self.router.cool(endpoint, loop.time())
                return None
            except (aiohttp.ClientError, TimeoutError) as error:
                place.leave("forwarded", attempt)
                self.metrics.upstream_errors.labels(model.alias, "broken").inc()
                return await self._bad_gateway(held, f"Replica failed: {error}")
            place.leave("forwarded", attempt)
            return await self._relay(model, held, upstream)

    async def _relay(
        self, model: ModelInfo, held: Held, upstream: proxy.Upstream
    ) -> web.StreamResponse:
        response = upstream.response
        try:
            if held.sse is not None:
                out = held.sse
                if response.status != 200:
                    body = upstream.prefetched or await response.read()
                    await out.write(sse_error_event(body))
                    await out.write_eof()
                    return out
            else:
                headers = proxy.response_headers(response.headers)
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
            self.metrics.upstream_errors.labels(model.alias, "broken").inc()
            log.warning("%s: replica failed mid-response: %s", model.alias, error)
            if held.request.transport is not None:
                held.request.transport.abort()
            return held.sse or web.Response(status=502)
        finally:
            upstream.release()
        await out.write_eof()
        return out

    # --- counts ------------------------------------------------------------------------

    def _place_changed(self, model: ModelInfo, place: Place, outcome: str | None) -> None:
        """A request entered, stepped out of or left its queue; on leaving, its hold time is
        observed, once."""
        model = self.catalog.model_by_key(place.model) or model  # its alias, as it is now
        if outcome is not None and place.waited is not None:
            self.metrics.hold_seconds.labels(model.alias, outcome).observe(place.waited)
            log.info("%s: request held %.3fs: %s", model.alias, place.waited, outcome)
        self._counts_changed(model)

    def _in_flight_changed(self, key: ModelKey, alias: str) -> None:
        self.metrics.in_flight.labels(alias).set(self.in_flight.for_alias(alias))
        self._publish_counts(key, alias)

    def _counts_changed(self, model: ModelInfo) -> None:
        self._publish_counts(model.key, model.alias)

    def _publish_counts(self, key: ModelKey, alias: str) -> None:
        pending = self.queues.pending(key)
        self.metrics.queued.labels(alias).set(pending)
        self.demand.set_counts(key, pending, self.in_flight.for_model(key))
        self.kick_demand(key)

    async def _keepalive(self, held: Held) -> None:
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

    async def _unavailable(
        self, held: Held, message: str, code: str, retry_after: int | None = None
    ) -> web.StreamResponse:
        body = error_json(message, "unavailable_error", code)
        if held.sse is not None:
            await held.sse.write(sse_error_event(body))
            await held.sse.write_eof()
            return held.sse
        retry = self.settings.retry_after if retry_after is None else retry_after
        return web.Response(
            status=503, body=body, headers={"Content-Type": JSON, "Retry-After": str(retry)}
        )

    async def _failing(
        self, model: ModelInfo, held: Held, backoff: float = 0.0
    ) -> web.StreamResponse:
        """Failing replicas will not serve it, or it failed and waits out its backoff: answer
        now, with the operator's reason."""
        self.metrics.rejected.labels("model_failing").inc()
        if model.failure:
            message = f"Model {model.alias!r} is failing: {model.failure}"
            return await self._unavailable(held, message, "model_failing")
        seconds = math.ceil(backoff)
        message = (
            f"Model {model.alias!r} failed ({model.last_failure or 'see its status'}); it is "
            f"woken again in {seconds}s, or sooner after a spec change or a new value of its "
            f"{WAKE_RETRY_ANNOTATION} annotation."
        )
        return await self._unavailable(held, message, "model_failing", retry_after=seconds)

    async def _bad_gateway(self, held: Held, message: str) -> web.StreamResponse:
        body = error_json(message, "upstream_error", "bad_gateway")
        if held.sse is not None:
            await held.sse.write(sse_error_event(body))
            await held.sse.write_eof()
            return held.sse
        return web.Response(status=502, body=body, headers={"Content-Type": JSON})
