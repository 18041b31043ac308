"""The ModelDeployment status, built from a decision and what was observed. Pure.

The status is also where the decision's Memory lives between operator restarts
(lastActiveTime, scaleDownSince, manualOverride, desiredReplicas): all state is in the
cluster, so a restarted operator converges to the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siesta.api.contract import MODEL_SERVING_CONDITION
from siesta.api.models import ColdStart, Phase
from siesta.operator.observe import format_time, parse_time
from siesta.operator.rollout import Rollout
from siesta.operator.wake_backoff import next_wake_backoff
from siesta.policy import Condition, Decision, ManualOverride, Memory, Observed, Transition
from siesta.policy.bridge import BridgeDecision, BridgeMemory, BridgeState
from siesta.policy.idle import GapHistory
from siesta.policy.prewarm import DemandPattern


def memory_from_status(status: Mapping[str, Any] | None) -> Memory:
    status = status or {}
    override = status.get("manualOverride") or None
    remembered: ManualOverride | None = None
    if override:
        since = parse_time(override.get("since"))
        until = parse_time(override.get("until"))
        if since and until and isinstance(override.get("replicas"), int):
            remembered = ManualOverride(int(override["replicas"]), since, until)
    desired = status.get("desiredReplicas")
    gaps = status.get("requestGaps") or {}
    return Memory(
        last_request_time=parse_time(gaps.get("lastRequestTime")),
        request_gaps=GapHistory.from_mapping(gaps.get("counts") or {}),
        demand_pattern=DemandPattern.from_status(status.get("demandPattern") or {}),
        desired=int(desired) if isinstance(desired, int) else None,
        last_active_time=parse_time(status.get("lastActiveTime")),
        scale_down_since=parse_time(status.get("scaleDownSince")),
        manual_override=remembered,
    )


def bridge_memory_from_status(status: Mapping[str, Any] | None) -> BridgeMemory:
    """The bridge decision's memory from status.bridge (written by `bridge_status`)."""
    found = (status or {}).get("bridge") or {}
    try:
        state = BridgeState(found.get("state") or BridgeState.ASLEEP)
    except ValueError:
        state = BridgeState.ASLEEP
    desired = found.get("desiredReplicas")
    return BridgeMemory(
        desired=int(desired) if isinstance(desired, int) else 0,
        state=state,
        since=parse_time(found.get("since")),
        demand_since=parse_time(found.get("demandSince")),
        failed_at=parse_time(found.get("failedAt")),
        failure=str(found.get("failure") or ""),
        failed_spec=str(found.get("failedSpec") or ""),
    )


def bridge_status(bridge: BridgeDecision, observed: Observed) -> dict[str, Any]:
    """status.bridge: what runs, its state and why, and the decision's memory. Every key is
    written (None when unset): a merge patch keeps the keys it does not name."""
    memory = bridge.memory
    return {
        "replicas": observed.replicas,
        "readyReplicas": observed.ready,
        "desiredReplicas": bridge.desired,
        "state": bridge.state.value,
        "reason": bridge.reason,
        "gpu": bridge.gpu_reason or None,
        "since": format_time(memory.since),
        "demandSince": format_time(memory.demand_since),
        "failedAt": format_time(memory.failed_at),
        "failure": memory.failure or None,
        "failedSpec": memory.failed_spec or None,
    }


@dataclass(frozen=True)
class Situation:
    """Everything besides the decision that the status reports."""

    observed: Observed
    paused: bool = False
    metrics_configured: bool = True
    pending: tuple[tuple[str, str], ...] = ()
    """(cause, scheduler message) of pods Pending for something no GPU node fixes."""
    waiting_message: str = ""
    autoscaler: str = ""
    """The node autoscaler's latest word on an unscheduled pod (`who: message`), if any."""
    cold_start: ColdStart | None = None
    transition: Transition | None = None
    generation: int | None = None
    selector: str | None = None
    last_scale_time: datetime | None = None
    spec_error: str = ""
    children_error: str = ""
    """Why the StatefulSet or a Service could not be created or updated (API server's words)."""
    wake_retry: str = ""
    """The `siesta.dev/wake-retry` annotation: a new value forgets the wake backoff."""
    name: Condition | None = None
    """NameUnique: whether this model holds its bare alias (siesta.operator.names)."""
    update: Rollout | None = None
    """Pods on an older template and why they wait (None: the revisions are not known)."""
    bridge: dict[str, Any] | None = None
    """status.bridge (`bridge_status`); None: the model has no bridge."""
    bridge_condition: Condition | None = None
    """BridgeServing: False while the bridge fails, in its container's words."""


def _failed(decision: Decision | None, kind: str) -> bool:
    return decision is not None and any(
        c.type == kind and not c.status for c in decision.conditions
    )


def phase(decision: Decision | None, situation: Situation) -> Phase:
    observed = situation.observed
    failing = observed.replicas > 0 and _failed(decision, MODEL_SERVING_CONDITION)
    if (
        situation.spec_error
        or situation.children_error
        or failing
        or _failed(decision, "ScheduleValid")
    ):
        return Phase.DEGRADED
    if situation.paused:
        return Phase.PAUSED
    if observed.waiting_for_gpu > 0:
        return Phase.WAITING_FOR_GPU
    if observed.starting > 0:
        return Phase.LOADING
    desired = decision.desired if decision else observed.replicas
    if desired != observed.replicas or observed.ready != observed.replicas:
        return Phase.SCALING
    if observed.replicas == 0:
        return Phase.SCALED_TO_ZERO
    return Phase.READY


def _ready_condition(decision: Decision | None, situation: Situation) -> Condition:
    observed = situation.observed
    desired = decision.desired if decision else observed.replicas
    if desired == 0 and observed.ready == 0:
        return Condition("Ready", True, "ScaledToZero", "no replicas wanted")
    if observed.ready >= desired:
        return Condition(
            "Ready", True, "ReplicasReady", f"{observed.ready}/{desired} replicas ready"
        )
    if observed.failing:
        return Condition(
            "Ready",
            False,
            "ReplicasFailing",
            f"{observed.ready}/{desired} replicas ready; {observed.failure}",
        )
    if situation.pending:
        cause, message = situation.pending[0]
        return Condition(
            "Ready", False, cause, f"{observed.ready}/{desired} replicas ready; {message}"
        )
    if observed.waiting_for_gpu:
        return Condition(
            "Ready",
            False,
            "WaitingForGPU",
            f"{observed.ready}/{desired} replicas ready; waiting for a GPU node"
            + (f"; {situation.autoscaler}" if situation.autoscaler else ""),
        )
    return Condition(
        "Ready", False, "ReplicasNotReady", f"{observed.ready}/{desired} replicas ready"
    )


def remembered_failure(
    serving: Condition, situation: Situation, previous: Mapping[str, Any]
) -> Condition:
    """Asleep after failing: keep saying why (until a replica runs again or the spec changes)."""
    if serving.status is False or serving.reason != "NoFailures":
        return serving
    for old in previous.get("conditions") or []:
        if (
            old.get("type") == MODEL_SERVING_CONDITION
            and old.get("status") == "False"
            and previous.get("observedGeneration") == situation.generation
        ):
            return Condition(
                MODEL_SERVING_CONDITION, False, str(old.get("reason")), str(old.get("message"))
            )
    return serving


def _conditions(
    decision: Decision | None, situation: Situation, previous: Mapping[str, Any]
) -> list[Condition]:
    found: list[Condition] = []
    if situation.spec_error:
        found.append(Condition("SpecValid", False, "InvalidSpec", situation.spec_error))
    else:
        found.append(Condition("SpecValid", True, "Valid", "spec accepted"))
    if situation.children_error:
        found.append(Condition("ChildrenReady", False, "ApplyFailed", situation.children_error))
    found.append(_ready_condition(decision, situation))
    if situation.name is not None:
        found.append(situation.name)
    if situation.update is not None:
        found.append(_up_to_date_condition(situation.update))
    if situation.bridge_condition is not None:
        found.append(situation.bridge_condition)
    for condition in decision.conditions if decision else []:
        if condition.type == MODEL_SERVING_CONDITION:
            condition = remembered_failure(condition, situation, previous)
        if condition.type == "MetricsAvailable" and not situation.metrics_configured:
            condition = Condition(
                "MetricsAvailable",
                True,
                "NotConfigured",
                "no Prometheus URL configured; load counts as 0",
            )
        found.append(condition)
    return found


def _up_to_date_condition(update: Rollout) -> Condition:
    if not update.pending:
        return Condition("UpToDate", True, "UpToDate", update.message)
    return Condition("UpToDate", False, "UpdatePending", update.message)


def render_conditions(
    conditions: list[Condition], previous: list[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions; lastTransitionTime only moves when the status flips."""
    before = {c.get("type"): c for c in previous}
    rendered = []
    for condition in conditions:
        status = "True" if condition.status else "False"
        old = before.get(condition.type)
        if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
        else:
            since = format_time(now) or ""
        rendered.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since,
            }
        )
    return rendered


def _phase_notes(situation: Situation) -> list[str]:
    notes = []
    if situation.spec_error:
        notes.append(f"invalid spec: {situation.spec_error}")
    if situation.children_error:
        notes.append(f"cannot apply owned objects: {situation.children_error}")
    if situation.observed.failing:
        notes.append(f"failing: {situation.observed.failure}")
    if situation.update is not None and situation.update.pending:
        notes.append(f"update pending: {situation.update.message}")
    for cause, message in situation.pending[:1]:
        notes.append(f"{len(situation.pending)} pod(s) pending ({cause}): {message}")
    if situation.observed.waiting_for_gpu:
        count = situation.observed.waiting_for_gpu
        detail = f": {situation.waiting_message}" if situation.waiting_message else ""
        notes.append(f"{count} pod(s) waiting for a GPU node{detail}")
    if situation.autoscaler and (situation.pending or situation.observed.waiting_for_gpu):
        notes.append(f"autoscaler says: {situation.autoscaler}")
    return notes


def build_status(
    decision: Decision | None,
    situation: Situation,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The whole status object (camelCase); None values delete fields in a merge patch."""
    previous = previous or {}
    observed = situation.observed
    conditions = _conditions(decision, situation, previous)
    notes = _phase_notes(situation)
    asleep = next(
        (c for c in conditions if c.type == MODEL_SERVING_CONDITION and not c.status), None
    )
    if asleep is not None and observed.replicas == 0 and not situation.spec_error:
        notes.append(f"asleep after failing: {asleep.message}")
    reasons = notes + (list(decision.reasons) if decision else [])
    memory = decision.memory if decision else Memory()
    override = memory.manual_override
    transition = situation.transition
    cold = situation.cold_start
    last_scale = format_time(situation.last_scale_time) or previous.get("lastScaleTime")
    return {
        "phase": phase(decision, situation).value,
        "replicas": observed.replicas,
        "readyReplicas": observed.ready,
        "desiredReplicas": decision.desired if decision else previous.get("desiredReplicas"),
        "reason": reasons[0] if reasons else None,
        "reasons": reasons,
        "lastActiveTime": format_time(memory.last_active_time)
        if decision
        else previous.get("lastActiveTime"),
        "scaleDownSince": format_time(memory.scale_down_since)
        if decision
        else previous.get("scaleDownSince"),
        "lastScaleTime": last_scale,
        "nextTransition": (
            {
                "time": format_time(transition.time),
                "replicas": transition.replicas,
                "reason": transition.reason,
            }
            if transition
            else None
        ),
        # Nested keys are sent as null when unset: a merge patch keeps keys it does not name.
        "coldStart": cold.model_dump(by_alias=True) if cold else None,
        "manualOverride": (
            {
                "replicas": override.replicas,
                "since": format_time(override.since),
                "until": format_time(override.until),
            }
            if override
            else (previous.get("manualOverride") if decision is None else None)
        ),
        "requestGaps": _request_gaps(memory) if decision else previous.get("requestGaps"),
        "demandPattern": (
            (memory.demand_pattern.as_status() if memory.demand_pattern.days else None)
            if decision
            else previous.get("demandPattern")
        ),
        "selector": situation.selector,
        "wakeBackoff": next_wake_backoff(
            previous.get("wakeBackoff"),
            failing=observed.failing > 0 and observed.replicas > 0,
            serving=observed.ready > 0 and not observed.failing,
            generation=situation.generation,
            retry_token=situation.wake_retry,
            now=now,
        ),
        "bridge": situation.bridge if decision else previous.get("bridge"),
        "observedGeneration": situation.generation,
        "conditions": render_conditions(conditions, previous.get("conditions") or [], now),
    }


def _request_gaps(memory: Memory) -> dict[str, Any] | None:
    """idleTimeout: auto's history (absent for models that never learned)."""
    if memory.last_request_time is None and not memory.request_gaps.rows:
        return None
    return {
        "lastRequestTime": format_time(memory.last_request_time),
        "counts": memory.request_gaps.as_mapping(),
    }


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def status_changed(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change anything (None and absent are the same)."""
    return bool(_pruned(dict(new)) != _pruned(dict(previous or {})))
