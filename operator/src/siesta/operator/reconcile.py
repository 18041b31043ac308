"""One model's loop: gather -> plan -> execute, then sleep until the answer can change.

`ModelLoop.step` is called by the per-model kopf daemon whenever it wakes: at the decision's
`nextChange`, on the metric interval while replicas run, or at once when a Lease, pod,
StatefulSet, Service or the ModelDeployment itself changes. What to do is
`siesta.operator.plan.plan` (pure); `siesta.operator.execute` does it; this module only
gathers the inputs (the indexes' views and the load reading) and keeps what a step remembers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from siesta.api.contract import ModelKey
from siesta.operator import render, telemetry
from siesta.operator.autoscaler import PodEvent, pod_event
from siesta.operator.execute import ChildrenFailed, StatusNotWritten, execute, record
from siesta.operator.kube import Kube
from siesta.operator.load import LoadReading, with_fallback
from siesta.operator.metrics_source import PrometheusSource
from siesta.operator.plan import (
    LoadQuery,
    Model,
    Remembered,
    Views,
    gateway_in_flight,
    load_query,
    plan,
    rollout_evidence_urls,
    server_metrics_urls,
    status_only,
    unscheduled_pods,
)
from siesta.operator.server_load import read_servers
from siesta.operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

# Bursts of events (a pod flapping, several gateways) share one Prometheus query.
LOAD_CACHE_SECONDS = 1.0
# Reading the servers' own /metrics: short, an unreachable pod must not stall the loop.
SERVER_METRICS_SECONDS = 2.0
# A pod waiting for a node: its Events (the autoscaler's word) are read at most this often.
POD_EVENTS_SECONDS = 15.0


class Runtime:
    """Process-wide state shared by every model's daemon (kept in kopf's memo)."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.wakers: dict[ModelKey, asyncio.Event] = {}
        self._sources: dict[str, PrometheusSource] = {}

    def now(self) -> datetime:
        return datetime.now(UTC) + self.settings.clock_offset

    def waker(self, key: ModelKey) -> asyncio.Event:
        return self.wakers.setdefault(key, asyncio.Event())

    def wake(self, key: ModelKey) -> None:
        event = self.wakers.get(key)
        if event is not None:
            event.set()

    def forget(self, key: ModelKey) -> None:
        self.wakers.pop(key, None)

    def source(self, url: str) -> PrometheusSource:
        if url not in self._sources:
            self._sources[url] = PrometheusSource(url, self.settings.prometheus_timeout)
        return self._sources[url]


class ModelLoop:
    """The state one model's daemon keeps between steps (all of it recoverable from the cluster)."""

    def __init__(
        self, runtime: Runtime, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> None:
        self.runtime = runtime
        self.owner = render.Owner(name=name, namespace=namespace, uid=uid)
        self.remembered = Remembered.from_status(status)
        self._load: tuple[float, LoadQuery, LoadReading] | None = None
        self._pod_events: tuple[float, str, tuple[PodEvent, ...]] | None = None
        self._events_readable = True

    async def step(self, body: Mapping[str, Any], views: Views) -> float | None:
        """One reconcile cycle; returns seconds until the next one is due (None: only on events)."""
        settings, now = self.runtime.settings, self.runtime.now()
        model = Model.read(body, self.owner, settings)
        views = replace(views, pod_events=await self._read_pod_events(views))
        load = await self._read_load(load_query(model, views, self.remembered, settings))
        if load is not None and load.value is None:
            load = await self._fallback_load(load, views, now)
        servers = await self._rollout_evidence(model, views, load, now)
        planned = plan(model, views, self.remembered, load, settings, now, servers)
        try:
            await execute(planned, self.runtime.kube, self.owner, now)
        except ChildrenFailed as failed:
            # Say why in the status (not only in the log), then let the loop back off.
            planned = status_only(model, views, self.remembered, now, children_error=failed.message)
            await execute(planned, self.runtime.kube, self.owner, now)
            raise failed.error from None
        except StatusNotWritten as failed:
            # The scale and its events happened: remember them (a retry must not scale and
            # announce it twice) and that this status still has to be written.
            self.remembered = replace(planned.remember, status_unwritten=True)
            raise failed.error from None
        finally:
            # Metrics describe this step even if a write failed; its cold starts count once.
            record(planned, *self.owner_key)
            seen_ready = planned.remember.seen_ready or self.remembered.seen_ready
            self.remembered = replace(self.remembered, seen_ready=seen_ready)
        self.remembered = planned.remember
        return planned.next_look

    @property
    def owner_key(self) -> ModelKey:
        return ModelKey(self.owner.namespace, self.owner.name)

    async def _read_load(self, query: LoadQuery | None) -> LoadReading | None:
        if query is None:
            return None
        cached = self._load
        if (
            cached is not None
            and time.monotonic() - cached[0] < LOAD_CACHE_SECONDS
            and cached[1].same_answer(query)
        ):
            return cached[2]
        reading = await self.runtime.source(query.url).read(query.query, query.ready)
        result = "ok" if reading.value is not None else "unavailable"
        telemetry.METRIC_QUERIES.labels(*self.owner_key, result).inc()
        self._load = (time.monotonic(), query, reading)
        return reading

    async def _read_pod_events(self, views: Views) -> tuple[PodEvent, ...]:
        """Events of the first unscheduled pod, cached (read only while a pod waits)."""
        waiting = unscheduled_pods(views)
        if not waiting or not self._events_readable:
            self._pod_events = None
            return ()
        cached = self._pod_events
        if (
            cached is not None
            and cached[1] == waiting[0]
            and time.monotonic() - cached[0] < POD_EVENTS_SECONDS
        ):
            return cached[2]
        try:
            bodies = await self.runtime.kube.pod_events(self.owner.namespace, waiting[0])
        except ApiException as error:
            if error.status == 403:  # an older RBAC without `list events`: do without
                logger.warning("%s/%s: cannot list Events (%s)", *self.owner_key, error.reason)
                self._events_readable = False
            return ()
        events = tuple(pod_event(body) for body in bodies)
        self._pod_events = (time.monotonic(), waiting[0], events)
        return events

    async def _rollout_evidence(
        self, model: Model, views: Views, load: LoadReading | None, now: datetime
    ) -> LoadReading | None:
        """The servers' own load, read only when a pod on an older template waits for an
        idle moment that nothing else can show."""
        urls = rollout_evidence_urls(model, views, load, now)
        if not urls:
            return None
        return await read_servers(urls, SERVER_METRICS_SECONDS)

    async def _fallback_load(
        self, reading: LoadReading, views: Views, now: datetime
    ) -> LoadReading:
        """Prometheus did not answer: ask the ready servers, then the gateways' Leases."""
        urls = server_metrics_urls(views)
        seconds = min(self.runtime.settings.prometheus_timeout, SERVER_METRICS_SECONDS)
        servers = await read_servers(urls, seconds) if urls is not None else None
        return with_fallback(reading, servers, gateway_in_flight(views, now))


async def sleep_until_woken(
    event: asyncio.Event, seconds: float | None, stopping: Awaitable[object] | None = None
) -> None:
    """Wait for the model's waker (a watch event), the timeout, or the daemon being stopped
    (so a stopping operator ends each loop at once instead of having kopf cancel it)."""
    waits: list[asyncio.Future[object]] = [asyncio.ensure_future(event.wait())]
    if stopping is not None:
        waits.append(asyncio.ensure_future(stopping))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
