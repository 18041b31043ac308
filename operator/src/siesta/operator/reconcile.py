"""One model's loop: gather -> decide -> apply, then sleep until the answer can change.

`ModelLoop.step` is called by the per-model kopf daemon whenever it wakes: at the decision's
`nextChange`, on the metric interval while replicas run, or at once when a Lease, pod,
StatefulSet, Service or the ModelDeployment itself changes. The decision itself is
`siesta.policy.decide`; this module only gathers its inputs and carries out its answer,
writing only what changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from siesta.api.contract import ModelKey
from siesta.api.loader import describe_validation_error
from siesta.api.models import ColdStart, ModelDeploymentSpec, Phase
from siesta.operator import render, telemetry
from siesta.operator.demand import LeaseView, demand
from siesta.operator.kube import ChildView, Kube, api_error_message
from siesta.operator.metrics_source import LoadReading, PrometheusSource, render_query
from siesta.operator.observe import PodView, cold_start, failing_pods, observe, waiting_message
from siesta.operator.settings import OperatorSettings
from siesta.operator.status import Situation, build_status, memory_from_status, status_changed
from siesta.policy import Decision, Memory, Signals, decide, forecast

logger = logging.getLogger(__name__)

# Bursts of events (a pod flapping, several gateways) share one Prometheus query.
LOAD_CACHE_SECONDS = 1.0
MIN_SLEEP_SECONDS = 0.05


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


@dataclass(frozen=True)
class Views:
    """This model's slice of the operator's indexes (kept current by kopf's watches)."""

    pods: list[PodView] = field(default_factory=list)
    leases: list[LeaseView] = field(default_factory=list)
    children: dict[tuple[str, str], ChildView] = field(default_factory=dict)

    @classmethod
    def build(
        cls, pods: Iterable[PodView], leases: Iterable[LeaseView], children: Iterable[ChildView]
    ) -> Views:
        return cls(list(pods), list(leases), {(c.kind, c.name): c for c in children})


def effective_spec(spec: ModelDeploymentSpec, settings: OperatorSettings) -> ModelDeploymentSpec:
    """The spec with operator defaults filled in (idleTimeout)."""
    if spec.scaling.idle_timeout is not None:
        return spec
    scaling = spec.scaling.model_copy(update={"idle_timeout": settings.default_idle_timeout})
    return spec.model_copy(update={"scaling": scaling})


class ModelLoop:
    """The state one model's daemon keeps between steps (all of it recoverable from the cluster)."""

    def __init__(
        self, runtime: Runtime, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> None:
        self.runtime = runtime
        self.owner = render.Owner(name=name, namespace=namespace, uid=uid)
        self.status: dict[str, Any] = dict(status)
        self.memory: Memory = memory_from_status(status)
        self.replicas_written: int | None = None
        self.seen_ready: set[str] | None = None
        self._load: tuple[float, str, LoadReading] | None = None

    @property
    def labels(self) -> tuple[str, str]:
        return (self.owner.namespace, self.owner.name)

    async def step(self, body: Mapping[str, Any], views: Views) -> float | None:
        """One reconcile cycle; returns seconds until the next one is due (None: only on events)."""
        settings = self.runtime.settings
        now = self.runtime.now()
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        try:
            spec = effective_spec(
                ModelDeploymentSpec.model_validate(body.get("spec") or {}), settings
            )
        except ValidationError as error:
            await self._write_status(
                None,
                Situation(
                    observed=observe(self._replicas(views), views.pods),
                    spec_error=describe_validation_error(error, "spec."),
                    generation=generation,
                    selector=render.status_selector(self.owner.name),
                ),
                now,
            )
            return None

        try:
            await self._ensure_children(spec, views)
        except ApiException as error:
            # Say why in the status (not only in the log), then let the loop back off.
            situation = Situation(
                observed=observe(self._replicas(views), views.pods),
                children_error=api_error_message(error),
                cold_start=self._previous_cold_start(),
                generation=generation,
                selector=render.status_selector(self.owner.name),
            )
            await self._write_status(None, situation, now)
            raise
        replicas = self._replicas(views)
        observed = observe(replicas, views.pods)
        wanted = demand(views.leases, now)
        reading, configured = await self._read_load(spec, observed.ready)
        signals = Signals(
            load=reading.value,
            load_error=reading.error,
            pending_requests=wanted.pending_requests,
            last_request_time=wanted.last_request_time,
        )
        decision = decide(spec, observed, signals, now, self.memory)
        telemetry.DECISIONS.labels(*self.labels, decision.rule).inc()

        if decision.clear_manual_replicas and spec.manual_replicas is not None:
            await self.runtime.kube.clear_manual_replicas(self.owner.namespace, self.owner.name)

        last_scale: datetime | None = None
        if decision.desired != observed.replicas:
            await self._scale(observed.replicas, decision, now)
            last_scale = now
            observed = observe(decision.desired, views.pods)

        cold = cold_start(views.pods, self._previous_cold_start())
        self._record_cold_starts(views.pods)
        situation = Situation(
            observed=observed,
            paused=spec.paused,
            metrics_configured=configured,
            failing=tuple(
                f"{p.name}: {p.failing}" for p in failing_pods(observed.replicas, views.pods)
            ),
            waiting_message=waiting_message(observed.replicas, views.pods),
            cold_start=cold,
            transition=forecast(spec, decision, signals),
            generation=generation,
            selector=render.status_selector(self.owner.name),
            last_scale_time=last_scale,
        )
        await self._write_status(decision, situation, now)
        self.memory = decision.memory
        self._gauges(observed, decision, reading)

        wake_times = [t for t in (decision.next_change, wanted.next_expiry) if t is not None]
        # The default query measures the model's own servers: at zero replicas it is 0 by
        # definition, so only a custom query is worth polling then.
        custom_query = spec.scaling.metric is not None and spec.scaling.metric.query is not None
        if configured and (observed.replicas > 0 or custom_query):
            wake_times.append(now + settings.metric_interval)
        if not wake_times:
            return None
        return max((min(wake_times) - now).total_seconds(), MIN_SLEEP_SECONDS)

    # --- gathering ------------------------------------------------------------------------

    def _replicas(self, views: Views) -> int:
        found = views.children.get(("StatefulSet", self.owner.name))
        current = found.replicas if found else 0
        if self.replicas_written is not None:
            if found is not None and found.replicas == self.replicas_written:
                self.replicas_written = None  # the watch has caught up with our write
            else:
                return self.replicas_written
        return current

    async def _ensure_children(self, spec: ModelDeploymentSpec, views: Views) -> None:
        settings = self.runtime.settings
        for desired in render.children(self.owner, spec, settings):
            existing = views.children.get((desired["kind"], desired["metadata"]["name"]))
            replicas = self.memory.desired or 0
            wrote = await self.runtime.kube.ensure(desired, existing, replicas)
            if wrote and desired["kind"] == "StatefulSet":
                logger.info("%s/%s: StatefulSet written", *self.labels)
                if existing is None:
                    self.replicas_written = replicas

    async def _read_load(self, spec: ModelDeploymentSpec, ready: int) -> tuple[LoadReading, bool]:
        metric = spec.scaling.metric
        url = (metric.prometheus_url if metric else None) or self.runtime.settings.prometheus_url
        if not url:
            return LoadReading(0.0), False
        query = render_query(
            metric.query if metric else None, self.owner.namespace, self.owner.name
        )
        cached = self._load
        key = f"{url} {query} {ready > 0}"
        if (
            cached is not None
            and cached[1] == key
            and time.monotonic() - cached[0] < LOAD_CACHE_SECONDS
        ):
            return cached[2], True
        reading = await self.runtime.source(url).read(query, ready)
        result = "ok" if reading.value is not None else "unavailable"
        telemetry.METRIC_QUERIES.labels(*self.labels, result).inc()
        self._load = (time.monotonic(), key, reading)
        return reading, True

    # --- applying -------------------------------------------------------------------------

    async def _scale(self, current: int, decision: Decision, now: datetime) -> None:
        namespace, name = self.labels
        await self.runtime.kube.scale(namespace, name, decision.desired)
        self.replicas_written = decision.desired
        up = decision.desired > current
        direction = "up" if up else "down"
        telemetry.SCALE_CHANGES.labels(namespace, name, direction, decision.rule).inc()
        message = f"{current} -> {decision.desired}: {'; '.join(decision.reasons[:2])}"
        logger.info("%s/%s: scaled %s", namespace, name, message)
        try:
            await self.runtime.kube.post_event(
                self.owner, "ScaledUp" if up else "ScaledDown", message, now
            )
        except Exception:  # an event is information; the scale itself has happened
            logger.warning("%s/%s: could not post the scale event", namespace, name, exc_info=True)

    async def _write_status(
        self, decision: Decision | None, situation: Situation, now: datetime
    ) -> None:
        status = build_status(decision, situation, self.status, now)
        telemetry.PHASE.labels(*self.labels).set(telemetry.PHASE_CODES[Phase(status["phase"])])
        if not status_changed(self.status, status):
            return
        await self.runtime.kube.patch_status(self.owner.namespace, self.owner.name, status)
        self.status = {k: v for k, v in status.items() if v is not None}

    def _previous_cold_start(self) -> ColdStart | None:
        raw = self.status.get("coldStart")
        if not raw:
            return None
        try:
            return ColdStart.model_validate(raw)
        except ValidationError:
            return None

    def _record_cold_starts(self, pods: list[PodView]) -> None:
        ready = {p.uid: p for p in pods if p.ready and not p.terminating}
        if self.seen_ready is None:  # started (or restarted): those were measured before
            self.seen_ready = set(ready)
            return
        for uid, pod in ready.items():
            if uid in self.seen_ready or pod.created is None or pod.ready_since is None:
                continue
            self.seen_ready.add(uid)
            scheduled = pod.scheduled_at or pod.created
            for phase, seconds in (
                ("pending", (scheduled - pod.created).total_seconds()),
                ("loading", (pod.ready_since - scheduled).total_seconds()),
                ("total", (pod.ready_since - pod.created).total_seconds()),
            ):
                telemetry.COLD_START.labels(*self.labels, phase).observe(max(seconds, 0.0))
        self.seen_ready &= set(ready) | {p.uid for p in pods}

    def _gauges(self, observed: Any, decision: Decision, reading: LoadReading) -> None:
        telemetry.DESIRED_REPLICAS.labels(*self.labels).set(decision.desired)
        telemetry.REPLICAS.labels(*self.labels).set(observed.replicas)
        telemetry.READY_REPLICAS.labels(*self.labels).set(observed.ready)
        telemetry.WAITING_FOR_GPU.labels(*self.labels).set(observed.waiting_for_gpu)
        telemetry.LOAD.labels(*self.labels).set(
            reading.value if reading.value is not None else float("nan")
        )


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
