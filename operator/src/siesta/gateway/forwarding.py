"""The path of one inference request: forward at once, or hold until a replica is ready.

In steps: pick a replica (`_pick`: a usable GPU replica first, else the model's CPU bridge,
fewest in flight first), try it (`_try`: counted in flight per model and role for as long
as it runs), or, with none usable, wait in the model's bounded queue (`_wait`) while the
demand Lease tells the operator to wake the model. Held requests go out in arrival order
as soon as a replica of either kind becomes ready, or get a 503 with Retry-After after the
model's wakeTimeout. A request the bridge serves stays there until its stream ends;
requests that arrive once a GPU replica is ready go to the GPU. Only failures where the
replica did no work are retried (see `proxy`); a bridge that fails that way cools down
like any replica, and the request goes on waiting for the GPU.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from siesta.api.contract import ModelKey
from siesta.gateway import proxy
from siesta.gateway.auth import UpstreamKey
from siesta.gateway.catalog import Catalog, Endpoint, ModelInfo
from siesta.gateway.demand import DemandTracker, warm_interval
from siesta.gateway.holding import HoldQueues, Place, QueueFull
from siesta.gateway.inflight import InFlight, Role
from siesta.gateway.metrics import GatewayMetrics
from siesta.gateway.replies import Held, Refusals, keepalive, relay
from siesta.gateway.routing import Pick, Router, passes_on_busy
from siesta.gateway.settings import GatewaySettings

log = logging.getLogger("siesta.gateway")

UPSTREAM_KEEPALIVE_SECONDS = 3.0  # below uvicorn's 5 s idle timeout: never reuse a closing socket


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
        self.refusals = Refusals(settings.retry_after, metrics, catalog)
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

    # --- the steps of a request ---------------------------------------------------------

    async def serve(self, model: ModelInfo, held: Held, body: bytes) -> web.StreamResponse:
        backoff = model.wake_backoff(time.time())
        if (model.failure or backoff) and not self._replicas(model.key):
            # Not counted as demand: a request no replica can serve must not keep it awake,
            # and one for a model that failed must not wake it before its backoff ends.
            return await self.refusals.failing(model, held, backoff)
        self.demand.seen(model.key, time.time(), warm_interval(model.idle_timeout))
        on_change = functools.partial(self._place_changed, model)
        async with self.queues.place(model.key, on_change) as place:
            held.place = place
            return await self._forward_or_hold(model, held, place, body)

    async def _forward_or_hold(
        self, model: ModelInfo, held: Held, place: Place, body: bytes
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + model.wake_timeout
        next_keepalive = loop.time() + self.settings.keepalive_interval
        while True:
            now = loop.time()
            if self.draining and not self._replicas(model.key):
                return await self.refusals.restarting(held)
            pick = self._pick(model.key, now)
            if pick is not None:
                with place.stepped_out():  # not waiting while it is tried
                    answer = await self._try(model, held, place, pick, body)
                if answer is not None:
                    return answer
                continue  # not reached or unavailable: it kept its place
            if model.failure:
                place.leave("failing")
                return await self.refusals.failing(model, held)
            if not place.held:
                try:
                    place.take(len(body), model.max_held, now)
                except QueueFull as full:
                    return await self.refusals.busy(model, held, full)
            if now >= deadline:
                place.leave("timeout")
                return await self.refusals.not_ready(model, held)
            next_keepalive = await self._wait(model.key, held, place, deadline, next_keepalive)
            current = self.catalog.model_by_key(model.key)
            if current is None:  # deleted while its requests were held
                place.leave("abandoned")
                return await self.refusals.deleted(model, held)
            model = current  # wakeTimeout may have changed

    def _replicas(self, key: ModelKey) -> list[Endpoint]:
        """Every ready replica of the model: its own, then its bridge's."""
        return self.catalog.endpoints(key) + self.catalog.bridge_endpoints(key)

    def _pick(self, key: ModelKey, now: float) -> Pick | None:
        return self.router.pick(
            self.catalog.endpoints(key), self.catalog.bridge_endpoints(key), now
        )

    async def _wait(
        self, key: ModelKey, held: Held, place: Place, deadline: float, next_keepalive: float
    ) -> float:
        """Wait for a ready replica (new endpoints wake the queue), a cooldown's end, the
        deadline or the next keep-alive; returns when the keep-alive after that is due."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        wake_at = min(deadline, next_keepalive)
        cooldown_end = self.router.next_cooldown_end(self._replicas(key), now)
        if cooldown_end is not None:
            wake_at = min(wake_at, cooldown_end)
        await place.wait(wake_at - now)
        if held.streaming and loop.time() >= next_keepalive:
            await keepalive(held)
            return loop.time() + self.settings.keepalive_interval
        return next_keepalive

    async def _try(
        self, model: ModelInfo, held: Held, place: Place, pick: Pick, body: bytes
    ) -> web.StreamResponse | None:
        """Forward to one replica; None when it never did the work (try elsewhere)."""
        endpoint, role = pick
        loop = asyncio.get_running_loop()
        attempt = loop.time()
        with self.in_flight.counting(model.key, model.alias, endpoint.key, role):
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
                if not passes_on_busy(role, self._pick(model.key, loop.time())):
                    busy.upstream.release()
                    return None  # it did no work here: another replica, or wait
                upstream = busy.upstream  # its 503 and Retry-After go out
            except (proxy.NotReached, proxy.Unavailable) as error:
                kind = "connect" if isinstance(error, proxy.NotReached) else "unavailable"
                log.info("%s: %s %s %s; trying again", model.alias, role, endpoint.url, kind)
                self.metrics.upstream_errors.labels(model.alias, kind).inc()
                self.router.cool(endpoint, loop.time())
                return None
            except (aiohttp.ClientError, TimeoutError) as error:
                place.leave("forwarded", attempt)
                self.metrics.upstream_errors.labels(model.alias, "broken").inc()
                return await self.refusals.bad_gateway(held, f"Replica failed: {error}")
            place.leave("forwarded", attempt)
            return await relay(held, upstream, role, self.metrics, model.alias)

    # --- counts ------------------------------------------------------------------------

    def _place_changed(self, model: ModelInfo, place: Place, outcome: str | None) -> None:
        """A request entered, stepped out of or left its queue; on leaving, its hold time is
        observed, once."""
        model = self.catalog.model_by_key(place.model) or model  # its alias, as it is now
        if outcome is not None and place.waited is not None:
            self.metrics.hold_seconds.labels(model.alias, outcome).observe(place.waited)
            log.info("%s: request held %.3fs: %s", model.alias, place.waited, outcome)
        self._publish_counts(model.key, model.alias)

    def _in_flight_changed(self, key: ModelKey, alias: str) -> None:
        for role in Role:
            self.metrics.in_flight.labels(alias, role).set(self.in_flight.for_alias(alias, role))
        self._publish_counts(key, alias)

    def _publish_counts(self, key: ModelKey, alias: str) -> None:
        pending = self.queues.pending(key)
        self.metrics.queued.labels(alias).set(pending)
        bridge = self.in_flight.for_model(key, Role.BRIDGE)
        model = self.catalog.model_by_key(key)
        has_bridge = bridge > 0 or (model is not None and model.has_bridge)
        gpu = self.in_flight.for_model(key, Role.GPU)
        self.demand.set_counts(key, pending, gpu, bridge if has_bridge else None)
        self.kick_demand(key)
