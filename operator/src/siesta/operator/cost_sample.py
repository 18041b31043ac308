"""One look at the cluster as cost facts, and the sample it adds to status.cost. Pure.

`siesta.operator.cost_loop` reads the objects; this module turns pod and node bodies into
`siesta.operator.cost` facts and advances the model's accounting by one sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from siesta.api.contract import MODEL_LABEL, ModelKey
from siesta.api.models import ModelDeploymentSpec
from siesta.operator import cost
from siesta.operator.observe import parse_time
from siesta.policy import CompiledSchedule, ScheduleError
from siesta.sim.world import instance_for

GPU = "nvidia.com/gpu"
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
CAPACITY_TYPE_LABELS = ("karpenter.sh/capacity-type", "eks.amazonaws.com/capacityType")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")


def _label(labels: Mapping[str, str], keys: Iterable[str]) -> str:
    return next((str(labels[key]) for key in keys if labels.get(key)), "")


def node_facts(body: Mapping[str, Any]) -> cost.NodeFacts:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    return cost.NodeFacts(
        name=str(meta.get("name", "")),
        instance_type=_label(labels, INSTANCE_TYPE_LABELS),
        capacity_type=cost.capacity_type(_label(labels, CAPACITY_TYPE_LABELS)),
        region=_label(labels, REGION_LABELS),
    )


def pod_gpus(body: Mapping[str, Any]) -> int:
    total = 0
    for container in (body.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU) or (resources.get("limits") or {}).get(
            GPU
        )
        try:
            total += int(str(value or 0))
        except ValueError:
            continue
    return total


def pod_facts(body: Mapping[str, Any]) -> cost.PodFacts | None:
    """A pod holding GPUs on a node (bound, not finished), or None."""
    node = (body.get("spec") or {}).get("nodeName")
    phase = (body.get("status") or {}).get("phase")
    gpus = pod_gpus(body)
    if not node or gpus <= 0 or phase in ("Succeeded", "Failed"):
        return None
    meta = body.get("metadata") or {}
    model = (meta.get("labels") or {}).get(MODEL_LABEL)
    key = ModelKey(str(meta.get("namespace", "")), str(model)) if model else None
    return cost.PodFacts(str(node), gpus, key)


def _ready_since(body: Mapping[str, Any]) -> datetime | None:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def wakes(
    pods: Iterable[Mapping[str, Any]], in_window: Callable[[datetime], bool]
) -> list[cost.Wake]:
    """Ready pods that started while no other pod of the model was ready: wakes from zero."""
    starts = []
    for body in pods:
        created = parse_time((body.get("metadata") or {}).get("creationTimestamp"))
        ready = _ready_since(body)
        if created is not None and ready is not None:
            starts.append((created, ready))
    found = []
    for created, ready in starts:
        if any(other_ready < created for _, other_ready in starts):
            continue  # another replica already served: a scale-up, not a wake
        seconds = round(max((ready - created).total_seconds(), 0.0), 3)
        found.append(cost.Wake(created, seconds, bool(in_window(created))))
    return found


def window_test(spec: ModelDeploymentSpec) -> Callable[[datetime], bool]:
    """Whether an instant is inside one of the spec's windows (prewarm not counted)."""
    try:
        schedule = CompiledSchedule(
            spec.schedule.model_copy(update={"prewarm": None}), 0, spec.replicas.max
        )
    except ScheduleError:
        return lambda _moment: False
    return lambda moment: schedule.floor_at(moment).window is not None


def sample(
    key: ModelKey,
    spec: ModelDeploymentSpec,
    status: Mapping[str, Any],
    created: datetime,
    model_pods: Sequence[Mapping[str, Any]],
    node_pods: Iterable[cost.PodFacts],
    nodes: Mapping[str, cost.NodeFacts],
    prices: cost.PriceTable,
    now: datetime,
) -> tuple[cost.CostState, cost.CostState | None]:
    """(the new state, the previous one) from one look at the cluster. Pure."""
    zone = spec.schedule.timezone
    previous = cost.from_status(status.get("cost"))
    state = previous or cost.begin(created, now, zone)
    uses = cost.node_uses(key, node_pods, nodes, prices)
    running = sum(1 for body in model_pods if pod_facts(body) is not None)
    fallback = prices.price(instance_for(spec)) if spec.gpu.count > 0 else None
    state = cost.advance(state, now, uses, running, max(1, spec.replicas.min), fallback, zone)
    for wake in wakes(model_pods, window_test(spec)):
        state = cost.record_wake(state, wake)
    return state, previous
