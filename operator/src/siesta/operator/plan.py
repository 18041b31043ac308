"""One model's reconcile as data: what to write, given what was observed. Pure.

`plan` turns the ModelDeployment, the operator's views of what it owns, what the loop
remembers, the load reading and the time into a `Plan`: the child objects to create, update
or re-create, the manual override to clear, the replica write, the events, the status patch,
what to remember and when to look again. `siesta.operator.execute` performs it;
`siesta.operator.reconcile` gathers the inputs. No kopf, no Kubernetes client, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from siesta.api.contract import (
    CONFIG_HASH_ANNOTATION,
    MODEL_SERVING_CONDITION,
    WAKE_RETRY_ANNOTATION,
    bridge_name,
)
from siesta.api.loader import describe_validation_error
from siesta.api.models import ColdStart, ModelDeploymentSpec, Phase
from siesta.operator import bridge_render, render
from siesta.operator.autoscaler import PodEvent, verdict
from siesta.operator.demand import Demand, LeaseView, demand
from siesta.operator.load import LoadReading, render_query
from siesta.operator.names import NameClaim, name_condition, name_event_due
from siesta.operator.observe import (
    ChildView,
    PodView,
    cold_start,
    observe,
    parse_time,
    pending_pods,
    waiting_message,
)
from siesta.operator.rollout import Replacement, Rollout, idleness, rollout
from siesta.operator.settings import OperatorSettings
from siesta.operator.status import (
    Situation,
    bridge_memory_from_status,
    bridge_status,
    build_status,
    memory_from_status,
    status_changed,
)
from siesta.policy import Decision, Memory, Observed, Signals, decide, forecast
from siesta.policy.bridge import (
    BridgeDecision,
    BridgeMemory,
    BridgeState,
    bridge_decision,
    gate_gpu,
)

MIN_SLEEP_SECONDS = 0.05
RECREATE_RETRY_SECONDS = 1.0
"""After orphaning a StatefulSet for re-creation: look again once the watch has seen it go."""
ROLLOUT_RETRY_SECONDS = 10.0
"""A pod on an older template waits for an idle moment: look again this often (Lease
changes wake the loop anyway; the servers' own /metrics are not watched)."""


@dataclass(frozen=True)
class Views:
    """This model's slice of the operator's indexes (kept current by kopf's watches)."""

    pods: list[PodView] = field(default_factory=list)
    leases: list[LeaseView] = field(default_factory=list)
    children: dict[tuple[str, str], ChildView] = field(default_factory=dict)
    pod_events: tuple[PodEvent, ...] = ()
    """Events on the model's unscheduled pods (read only while some wait; see autoscaler)."""
    name_holder: NameClaim | None = None
    """The older model holding this one's bare alias (siesta.operator.names), if any."""
    bridge_pods: list[PodView] = field(default_factory=list)
    """The pods of the model's CPU bridge (BRIDGE_LABEL): never among `pods`."""
    bridge_children: dict[tuple[str, str], ChildView] = field(default_factory=dict)
    """The bridge's StatefulSet, Service and NetworkPolicy (BRIDGE_LABEL), by (kind, name)."""

    @classmethod
    def build(
        cls,
        pods: Iterable[PodView],
        leases: Iterable[LeaseView],
        children: Iterable[ChildView],
        name_holder: NameClaim | None = None,
        bridge_pods: Iterable[PodView] = (),
        bridge_children: Iterable[ChildView] = (),
    ) -> Views:
        children_by_name = {(c.kind, c.name): c for c in children}
        return cls(
            list(pods),
            list(leases),
            children_by_name,
            name_holder=name_holder,
            bridge_pods=list(bridge_pods),
            bridge_children={(c.kind, c.name): c for c in bridge_children},
        )

    @property
    def bridge_statefulset(self) -> ChildView | None:
        return next(
            (c for (kind, _), c in self.bridge_children.items() if kind == "StatefulSet"), None
        )


@dataclass(frozen=True)
class Remembered:
    """What one model's loop keeps between steps (all of it recoverable from the cluster)."""

    status: Mapping[str, Any] = field(default_factory=dict)
    """The status as last written (or planned, when `status_unwritten`)."""
    memory: Memory = field(default_factory=Memory)
    """What the last decision left behind."""
    replicas_written: int | None = None
    """Replicas written that the StatefulSet watch has not shown yet (read-your-writes)."""
    seen_ready: frozenset[str] | None = None
    """Pods whose cold start is already measured; None until the first step."""
    status_unwritten: bool = False
    """The status write of the last step failed: the next step writes its status anyway."""
    bridge: BridgeMemory = field(default_factory=BridgeMemory)
    """What the last bridge decision left behind (status.bridge)."""
    bridge_replicas_written: int | None = None
    """Bridge replicas written that the watch has not shown yet."""

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Remembered:
        return cls(
            status=dict(status),
            memory=memory_from_status(status),
            bridge=bridge_memory_from_status(status),
        )


@dataclass(frozen=True)
class Model:
    """The ModelDeployment as this step reads it: its spec with operator defaults, or why not."""

    owner: render.Owner
    generation: int | None
    spec: ModelDeploymentSpec | None
    spec_error: str = ""
    wake_retry: str = ""  # the WAKE_RETRY_ANNOTATION (wake_backoff.py)

    @classmethod
    def read(
        cls, body: Mapping[str, Any], owner: render.Owner, settings: OperatorSettings
    ) -> Model:
        generation = (body.get("metadata") or {}).get("generation")
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        retry = str(annotations.get(WAKE_RETRY_ANNOTATION) or "")
        try:
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            return cls(owner, generation, None, describe_validation_error(error, "spec."), retry)
        return cls(owner, generation, effective_spec(spec, settings), wake_retry=retry)


def effective_spec(spec: ModelDeploymentSpec, settings: OperatorSettings) -> ModelDeploymentSpec:
    """The spec with operator defaults filled in (idleTimeout)."""
    if spec.scaling.idle_timeout is not None:
        return spec
    scaling = spec.scaling.model_copy(update={"idle_timeout": settings.default_idle_timeout})
    return spec.model_copy(update={"scaling": scaling})


@dataclass(frozen=True)
class ChildWrite:
    """Make one owned object match `manifest`."""

    action: Literal["create", "update", "recreate", "delete"]
    """recreate: orphan the pods and delete the StatefulSet (an immutable field changed); the
    next step creates it again and the new one adopts the pods. delete: an object of the
    bridge that spec.bridge no longer asks for."""
    manifest: render.Manifest
    replicas: int = 0
    """A StatefulSet created now gets the last decided count, so re-creating never scales."""

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class Scale:
    current: int
    desired: int
    rule: str
    reasons: tuple[str, ...]

    @property
    def up(self) -> bool:
        return self.desired > self.current

    @property
    def message(self) -> str:
        return f"{self.current} -> {self.desired}: {'; '.join(self.reasons[:2])}"


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class LoadQuery:
    """The load query to send for this step (None in its place: no Prometheus configured)."""

    url: str
    query: str
    ready: int

    def same_answer(self, other: LoadQuery) -> bool:
        """Whether `other` gets the same reading (ready only matters as "any ready")."""
        return (self.url, self.query, self.ready > 0) == (other.url, other.query, other.ready > 0)


@dataclass(frozen=True)
class Plan:
    remember: Remembered
    """What the loop keeps once the plan has been carried out."""
    next_look: float | None
    """Seconds until the answer can change without an event (None: only on events)."""
    phase: Phase | None = None
    children: tuple[ChildWrite, ...] = ()
    clear_manual_replicas: bool = False
    scale: Scale | None = None
    events: tuple[Event, ...] = ()
    status: dict[str, Any] | None = None
    """The status merge patch; None when nothing in it changed."""
    decision: Decision | None = None
    observed: Observed | None = None
    load: LoadReading | None = None
    cold_starts: tuple[tuple[str, float], ...] = ()
    """(phase, seconds) of cold starts completed since the last step."""
    replace_pods: tuple[Replacement, ...] = ()
    """Pods on an older template to delete now (see siesta.operator.rollout)."""
    bridge_scale: Scale | None = None
    """The bridge StatefulSet's replica write (docs/bridge.md)."""
    bridge: BridgeDecision | None = None
    bridge_observed: Observed | None = None

    def writes(self) -> list[str]:
        """What executing the plan writes, one line each (for logs and `siesta explain`)."""
        lines = [f"{c.action} {c.kind} {c.name}" for c in self.children]
        lines += [f"delete Pod {r.pod} ({r.why})" for r in self.replace_pods]
        if self.clear_manual_replicas:
            lines.append("clear spec.manualReplicas (the override expired)")
        if self.scale is not None:
            lines.append(f"scale StatefulSet to {self.scale.desired} ({self.scale.message})")
        if self.bridge_scale is not None:
            lines.append(
                f"scale the bridge StatefulSet to {self.bridge_scale.desired} "
                f"({self.bridge_scale.message})"
            )
        lines += [f"event {e.reason}: {e.message}" for e in self.events]
        if self.status is not None:
            lines.append(f"status: phase {self.status['phase']}, reason {self.status['reason']!r}")
        return lines


# --- the parts ---------------------------------------------------------------------------


def child_writes(
    owner: render.Owner,
    spec: ModelDeploymentSpec,
    settings: OperatorSettings,
    views: Views,
    replicas: int,
) -> tuple[ChildWrite, ...]:
    """The children whose manifest changed, in creation order; a re-create ends the list."""
    return _writes(render.children(owner, spec, settings), views.children, replicas)


def bridge_child_writes(
    owner: render.Owner,
    spec: ModelDeploymentSpec,
    settings: OperatorSettings,
    views: Views,
    replicas: int,
) -> tuple[ChildWrite, ...]:
    """The bridge's objects to write, then those spec.bridge no longer asks for, to delete."""
    wanted = bridge_render.children(owner, spec, settings)
    writes = _writes(wanted, views.bridge_children, replicas)
    if writes and writes[-1].action == "recreate":
        return writes
    kept = {(m["kind"], m["metadata"]["name"]) for m in wanted}
    gone = [
        ChildWrite("delete", _stub(kind, name, owner.namespace))
        for (kind, name) in views.bridge_children
        if (kind, name) not in kept
    ]
    return (*writes, *gone)


def _stub(kind: str, name: str, namespace: str) -> render.Manifest:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}}


def _writes(
    manifests: list[render.Manifest],
    existing_children: Mapping[tuple[str, str], ChildView],
    replicas: int,
) -> tuple[ChildWrite, ...]:
    writes: list[ChildWrite] = []
    for manifest in manifests:
        existing = existing_children.get((manifest["kind"], manifest["metadata"]["name"]))
        wanted_hash = manifest["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        if existing is None:
            writes.append(ChildWrite("create", manifest, replicas))
        elif existing.config_hash == wanted_hash:
            continue
        elif existing.immutable is not None and render.immutable_fields_differ(
            manifest, dict(existing.immutable)
        ):
            writes.append(ChildWrite("recreate", manifest, replicas))
            break
        else:
            writes.append(ChildWrite("update", manifest, replicas))
    return tuple(writes)


def read_your_writes(statefulset: ChildView | None, written: int | None) -> tuple[int, int | None]:
    """The StatefulSet's replicas, trusting our own write until the watch shows it.

    Returns (replicas, what is still unconfirmed)."""
    if written is None:
        return (statefulset.replicas if statefulset else 0), None
    if statefulset is not None and statefulset.replicas == written:
        return written, None  # the watch has caught up with our write
    return written, written


def _replicas_after(
    model: Model, views: Views, remembered: Remembered, children: tuple[ChildWrite, ...]
) -> tuple[int, int | None]:
    written = remembered.replicas_written
    for write in children:
        if _is_model_statefulset(write, model) and write.action == "create":
            written = write.replicas
    return read_your_writes(views.children.get(("StatefulSet", model.owner.name)), written)


def _bridge_replicas_after(
    model: Model, views: Views, remembered: Remembered, children: tuple[ChildWrite, ...]
) -> tuple[int, int | None]:
    written = remembered.bridge_replicas_written
    name = bridge_name(model.owner.name)
    for write in children:
        if write.kind == "StatefulSet" and write.name == name and write.action == "create":
            written = write.replicas
    return read_your_writes(views.bridge_children.get(("StatefulSet", name)), written)


def _is_model_statefulset(write: ChildWrite, model: Model) -> bool:
    return write.kind == "StatefulSet" and write.name == model.owner.name


def _children(
    model: Model, views: Views, remembered: Remembered, settings: OperatorSettings
) -> tuple[ChildWrite, ...]:
    assert model.spec is not None
    owner, spec = model.owner, model.spec
    writes = child_writes(owner, spec, settings, views, remembered.memory.desired or 0)
    if writes and writes[-1].action == "recreate":
        return writes
    bridge = bridge_child_writes(owner, spec, settings, views, remembered.bridge.desired)
    return (*writes, *bridge)


def load_query(
    model: Model, views: Views, remembered: Remembered, settings: OperatorSettings
) -> LoadQuery | None:
    """What to ask Prometheus before planning (None: no Prometheus configured)."""
    if model.spec is None:
        return None
    metric = model.spec.scaling.metric
    url = (metric.prometheus_url if metric else None) or settings.prometheus_url
    if not url:
        return None
    children = _children(model, views, remembered, settings)
    replicas, _ = _replicas_after(model, views, remembered, children)
    owner = model.owner
    query = render_query(metric.query if metric else None, owner.namespace, owner.name)
    return LoadQuery(url, query, observe(replicas, views.pods).ready)


def unscheduled_pods(views: Views) -> list[str]:
    """Pods the scheduler cannot place: the ones whose Events may hold an autoscaler's word."""
    return [p.name for p in views.pods if p.unschedulable and not p.ready and not p.terminating]


def server_metrics_urls(views: Views) -> list[str] | None:
    """Where the ready servers report their own load (None: a ready pod has no address)."""
    ready = [p for p in views.pods if p.ready and not p.terminating]
    if any(not p.address for p in ready):
        return None
    return [f"http://{p.address}:{render.HTTP_PORT}/metrics" for p in ready]


def rollout_evidence_urls(
    model: Model, views: Views, load: LoadReading | None, now: datetime
) -> list[str] | None:
    """The ready servers' /metrics to read when a pod on an older template waits for an idle
    moment and neither a gateway nor the load reading can say whether the model is idle."""
    statefulset = views.children.get(("StatefulSet", model.owner.name))
    if model.spec is None or statefulset is None or not statefulset.update_revision:
        return None
    if not any(p.ready and p.revision not in ("", statefulset.update_revision) for p in views.pods):
        return None
    if idleness(demand(views.leases, now), load)[0] is not None:
        return None
    return server_metrics_urls(views)


def _rollout(
    model: Model,
    views: Views,
    children: tuple[ChildWrite, ...],
    replicas: int,
    wanted: Demand,
    evidence: LoadReading | None,
) -> Rollout | None:
    if any(_is_model_statefulset(c, model) for c in children):
        return None  # the template changes now: its revision is not known yet
    statefulset = views.children.get(("StatefulSet", model.owner.name))
    return rollout(statefulset, views.pods, replicas, wanted, evidence)


def gateway_in_flight(views: Views, now: datetime) -> int | None:
    """The gateways' in-flight count for the model; None while no gateway's Lease is current."""
    wanted = demand(views.leases, now)
    return wanted.in_flight_requests if wanted.reporting else None


def failure_event(decision: Decision, previous: Mapping[str, Any]) -> Event | None:
    """A Warning Event when the model starts failing for a new cause (not on each restart:
    the cause is compared with the status written before)."""
    serving = next((c for c in decision.conditions if c.type == MODEL_SERVING_CONDITION), None)
    if serving is None or serving.status:
        return None
    before: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == MODEL_SERVING_CONDITION),
        {},
    )
    if before.get("status") == "False" and _cause(before.get("message")) == _cause(serving.message):
        return None
    return Event(serving.reason, serving.message, warning=True)


def _cause(message: object) -> str:
    """The container's own words from `pod: Reason: words` (observe.failure_text): the same
    words from another pod, or between a crash and its back-off, are not a new cause."""
    text = str(message or "")
    parts = text.split(": ", 2)
    return parts[2] if len(parts) == 3 and " " not in parts[0] + parts[1] else text


def new_cold_starts(
    pods: list[PodView], seen: frozenset[str] | None
) -> tuple[tuple[tuple[str, float], ...], frozenset[str]]:
    """Cold starts of pods that became ready since the last step, and the pods now seen."""
    ready = {p.uid: p for p in pods if p.ready and not p.terminating}
    if seen is None:  # started (or restarted): those were measured before
        return (), frozenset(ready)
    found: list[tuple[str, float]] = []
    now_seen = set(seen)
    for uid, pod in ready.items():
        if uid in now_seen or pod.created is None or pod.ready_since is None:
            continue
        now_seen.add(uid)
        scheduled = pod.scheduled_at or pod.created
        for phase, seconds in (
            ("pending", (scheduled - pod.created).total_seconds()),
            ("loading", (pod.ready_since - scheduled).total_seconds()),
            ("total", (pod.ready_since - pod.created).total_seconds()),
        ):
            found.append((phase, max(seconds, 0.0)))
    return tuple(found), frozenset(now_seen & (set(ready) | {p.uid for p in pods}))


def previous_cold_start(status: Mapping[str, Any]) -> ColdStart | None:
    raw = status.get("coldStart")
    if not raw:
        return None
    try:
        return ColdStart.model_validate(raw)
    except ValidationError:
        return None


def _with_status(
    remembered: Remembered, decision: Decision | None, situation: Situation, now: datetime
) -> tuple[dict[str, Any] | None, Mapping[str, Any], Phase]:
    """(the patch, or None if nothing changed; the status after it; its phase)."""
    status = build_status(decision, situation, remembered.status, now)
    phase = Phase(status["phase"])
    if not remembered.status_unwritten and not status_changed(remembered.status, status):
        return None, remembered.status, phase
    return status, {k: v for k, v in status.items() if v is not None}, phase


def _sleep(wake_times: list[datetime], now: datetime) -> float | None:
    if not wake_times:
        return None
    return max((min(wake_times) - now).total_seconds(), MIN_SLEEP_SECONDS)


# --- the plans ---------------------------------------------------------------------------


def plan(
    model: Model,
    views: Views,
    remembered: Remembered,
    load: LoadReading | None,
    settings: OperatorSettings,
    now: datetime,
    servers: LoadReading | None = None,
) -> Plan:
    """One step for one model. `load` is the answer to `load_query` (None: not configured);
    `servers` the ready servers' own load, read when `rollout_evidence_urls` asked for it."""
    if model.spec is None:
        return status_only(model, views, remembered, now, spec_error=model.spec_error)
    spec = model.spec
    children = _children(model, views, remembered, settings)
    if children and children[-1].action == "recreate":
        # Nothing else until the new StatefulSet exists: replicas carry over through memory.
        return Plan(remember=remembered, next_look=RECREATE_RETRY_SECONDS, children=children)

    replicas, written = _replicas_after(model, views, remembered, children)
    scaled_at = parse_time(remembered.status.get("lastScaleTime"))
    observed = observe(replicas, views.pods, scaled_at)
    wanted = demand(views.leases, now)
    reading = load if load is not None else LoadReading(0.0)
    signals = Signals(
        load=reading.value,
        load_error=reading.error,
        load_source=reading.source,
        pending_requests=wanted.pending_requests,
        last_request_time=wanted.last_request_time,
        bridge_in_flight=wanted.bridge_in_flight_requests,
    )
    decision = decide(spec, observed, signals, now, remembered.memory)
    bridge_replicas, bridge_written = _bridge_replicas_after(model, views, remembered, children)
    bridge_observed = observe(bridge_replicas, views.bridge_pods, remembered.bridge.since)
    bridge = _decide_bridge(spec, views, remembered, observed, bridge_observed, signals, now)
    if bridge is not None:
        decision = gate_gpu(decision, bridge, observed)
    clear_override = decision.clear_manual_replicas and spec.manual_replicas is not None

    scale: Scale | None = None
    failure = failure_event(decision, remembered.status)
    events: tuple[Event, ...] = (failure,) if failure else ()
    owner = model.owner
    name = name_condition(
        spec.model.alias or owner.name, owner.namespace, owner.name, views.name_holder
    )
    if name_event_due(name, remembered.status):
        events = (*events, Event(name.reason, name.message, warning=True))
    if decision.desired != observed.replicas:
        scale = Scale(observed.replicas, decision.desired, decision.rule, tuple(decision.reasons))
        events = (*events, Event("ScaledUp" if scale.up else "ScaledDown", scale.message))
        written = decision.desired
        observed = observe(decision.desired, views.pods, now)
    bridge_scale: Scale | None = None
    if bridge is not None and bridge.desired != bridge_observed.replicas:
        bridge_scale = Scale(bridge_observed.replicas, bridge.desired, "bridge", (bridge.reason,))
        events = (*events, bridge_event(bridge, bridge_scale, observed))
        bridge_written = bridge.desired
        bridge_observed = observe(bridge.desired, views.bridge_pods, now)
    update = _rollout(
        model, views, children, observed.replicas, wanted, load if load is not None else servers
    )
    if update is not None:
        events += tuple(
            Event("PodReplaced", f"{r.pod} ran an older template ({r.why}): replaced")
            for r in update.replace
        )

    situation = Situation(
        observed=observed,
        paused=spec.paused,
        metrics_configured=load is not None,
        pending=tuple(
            (p.pending_cause or "", p.unschedulable_message)
            for p in pending_pods(observed.replicas, views.pods)
        ),
        waiting_message=waiting_message(observed.replicas, views.pods),
        autoscaler=verdict(views.pod_events),
        cold_start=cold_start(views.pods, previous_cold_start(remembered.status)),
        transition=forecast(spec, decision, signals),
        generation=model.generation,
        wake_retry=model.wake_retry,
        name=name,
        selector=render.status_selector(model.owner.name),
        last_scale_time=now if scale else None,
        update=update,
        bridge=bridge_status(bridge, bridge_observed) if bridge is not None else None,
        bridge_condition=bridge.condition if bridge is not None else None,
    )
    patch, status, phase = _with_status(remembered, decision, situation, now)
    cold_starts, seen_ready = new_cold_starts(views.pods, remembered.seen_ready)

    wake_times = [t for t in (decision.next_change, wanted.next_expiry) if t is not None]
    if bridge is not None and bridge.next_change is not None:
        wake_times.append(bridge.next_change)
    # The default query measures the model's own servers: at zero replicas it is 0 by
    # definition, so only a custom query is worth polling then.
    custom_query = spec.scaling.metric is not None and spec.scaling.metric.query is not None
    if load is not None and (observed.replicas > 0 or custom_query):
        wake_times.append(now + settings.metric_interval)
    if update is not None and update.waiting:
        wake_times.append(now + timedelta(seconds=ROLLOUT_RETRY_SECONDS))

    return Plan(
        remember=Remembered(
            status,
            decision.memory,
            written,
            seen_ready,
            bridge=bridge.memory if bridge is not None else BridgeMemory(),
            bridge_replicas_written=bridge_written if bridge is not None else None,
        ),
        next_look=_sleep(wake_times, now),
        phase=phase,
        children=children,
        clear_manual_replicas=clear_override,
        scale=scale,
        events=events,
        status=patch,
        decision=decision,
        observed=observed,
        load=reading,
        cold_starts=cold_starts,
        replace_pods=update.replace if update is not None else (),
        bridge_scale=bridge_scale,
        bridge=bridge,
        bridge_observed=bridge_observed if bridge is not None else None,
    )


def _decide_bridge(
    spec: ModelDeploymentSpec,
    views: Views,
    remembered: Remembered,
    gpu: Observed,
    bridge: Observed,
    signals: Signals,
    now: datetime,
) -> BridgeDecision | None:
    """The CPU bridge's decision (siesta.policy.bridge); None for a model without one."""
    if spec.bridge is None:
        return None
    backoff = remembered.status.get("wakeBackoff") or {}
    return bridge_decision(
        spec,
        gpu,
        bridge,
        signals,
        now,
        remembered.bridge,
        draining=any(p.terminating for p in views.bridge_pods),
        gpu_wake_allowed=parse_time(backoff.get("nextWakeAllowed")),
    )


def bridge_event(bridge: BridgeDecision, scale: Scale, gpu: Observed) -> Event:
    """BridgeWoke, BridgeHandedOver, BridgeSlept, or a Warning BridgeFailed with its words."""
    if scale.up:
        return Event("BridgeWoke", scale.message)
    if bridge.state is BridgeState.FAILING:
        return Event("BridgeFailed", bridge.reason, warning=True)
    if gpu.ready > 0:
        return Event("BridgeHandedOver", scale.message)
    return Event("BridgeSlept", scale.message)


def status_only(
    model: Model,
    views: Views,
    remembered: Remembered,
    now: datetime,
    *,
    spec_error: str = "",
    children_error: str = "",
) -> Plan:
    """Say why nothing else can be done: the spec is invalid, or owned objects cannot be
    written (the API server's words); replicas and memory stay as they are."""
    statefulset = views.children.get(("StatefulSet", model.owner.name))
    replicas, written = read_your_writes(statefulset, remembered.replicas_written)
    situation = Situation(
        observed=observe(replicas, views.pods),
        spec_error=spec_error,
        children_error=children_error,
        cold_start=previous_cold_start(remembered.status) if children_error else None,
        generation=model.generation,
        selector=render.status_selector(model.owner.name),
    )
    patch, status, phase = _with_status(remembered, None, situation, now)
    return Plan(
        remember=replace(
            remembered, status=status, replicas_written=written, status_unwritten=False
        ),
        next_look=None,
        phase=phase,
        status=patch,
    )
