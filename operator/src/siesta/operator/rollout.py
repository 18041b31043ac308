"""Taking a new pod template without restarting a serving model. Pure.

Model StatefulSets use `updateStrategy: OnDelete`: a changed template (a new server image,
a chart upgrade) touches no running pod. `rollout` says which pods on an older template
(their `controller-revision-hash` is not the StatefulSet's `updateRevision`) the operator
replaces now, and why the others wait:
- a pod that serves nothing (failing, or not yet on a node) is replaced at once: it makes
  no progress, and the new template may be its fix;
- a pod that is starting (scheduled, loading) is left alone: it is making progress;
- a ready pod is replaced only while the model is idle (no request held or in flight, as
  the gateways' Leases and the load reading say; not knowing is not idle), one at a time,
  and only while every other pod of the model is ready (so a broken new template stops
  the rollout after one pod).
A model at zero has no pods: its next pods start on the new template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from siesta.operator.demand import Demand
from siesta.operator.load import LoadReading
from siesta.operator.observe import ChildView, PodView


@dataclass(frozen=True)
class Replacement:
    """Delete this pod (by uid: never a newer pod of the same name); the StatefulSet makes
    it again from the current template."""

    pod: str
    uid: str
    why: str


@dataclass(frozen=True)
class Rollout:
    outdated: tuple[str, ...] = ()
    """Pods of the current replica count still on an older template."""
    replace: tuple[Replacement, ...] = ()
    waiting: str = ""
    """Why outdated pods are left running for now ("" when none waits)."""

    @property
    def pending(self) -> bool:
        return bool(self.outdated)

    @property
    def message(self) -> str:
        if not self.outdated:
            return "every pod runs the current template"
        pods = ", ".join(self.outdated)
        if self.waiting:
            return f"{pods} on an older template: {self.waiting}"
        return f"{pods} on an older template: replacing"


def idleness(demand: Demand, load: LoadReading | None) -> tuple[bool | None, str]:
    """(True: idle, False: busy, None: cannot tell; why). Any source saying busy wins."""
    held, in_flight = demand.pending_requests, demand.in_flight_requests
    if held or in_flight:
        return False, f"{held} request(s) held and {in_flight} in flight at the gateway"
    if load is not None and load.value is not None and load.value > 0:
        return False, f"load is {load.value:g} ({load.source})"
    if demand.reporting or (load is not None and load.value is not None):
        return True, "no request held or in flight"
    return None, "no gateway reports demand and no load reading: cannot tell if it is idle"


def _serves_nothing(pod: PodView) -> str:
    """Why a not-ready pod makes no progress ("" if it is starting normally)."""
    if pod.failing:
        return f"not serving ({pod.failing})"
    if pod.unschedulable or (pod.phase == "Pending" and pod.scheduled_at is None):
        return "not on a node yet"
    return ""


def rollout(
    statefulset: ChildView | None,
    pods: Iterable[PodView],
    replicas: int,
    demand: Demand,
    load: LoadReading | None,
) -> Rollout | None:
    """What to replace now; None while the StatefulSet's revisions are not known."""
    if statefulset is None or not statefulset.update_revision or not statefulset.revisions_known:
        return None
    target = statefulset.update_revision
    live = [p for p in pods if not p.terminating and 0 <= p.ordinal < replicas]
    outdated = sorted(
        (p for p in live if p.revision and p.revision != target), key=lambda p: p.ordinal
    )
    if not outdated:
        return Rollout()
    names = tuple(p.name for p in outdated)
    replace = [Replacement(p.name, p.uid, why) for p in outdated if (why := _serves_nothing(p))]
    waiting = ""
    ready = [p for p in outdated if p.ready]
    starting = [p for p in outdated if not p.ready and not _serves_nothing(p)]
    if ready:
        busy_elsewhere = any(p.terminating for p in pods) or any(not p.ready for p in live)
        idle, why = idleness(demand, load)
        if replace or busy_elsewhere:
            waiting = "waiting until every other pod is ready (one replacement at a time)"
        elif idle:
            replace.append(Replacement(ready[0].name, ready[0].uid, f"idle: {why}"))
            if len(ready) > 1:
                waiting = "one replacement at a time"
        else:
            waiting = f"replaced when idle; {why}"
    elif starting:
        waiting = "starting; replaced once it is ready and idle"
    return Rollout(names, tuple(replace), waiting)
