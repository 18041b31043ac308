"""Demand Leases (docs/contracts.md, "Demand"): what to write, and when.

Each gateway replica owns one Lease per ModelDeployment it has seen requests for, so
replicas never contend. Requests its CPU bridge serves are the model's demand too (they
renew the Lease), and are counted apart (BRIDGE_IN_FLIGHT_ANNOTATION) so that the bridge's
streams never read as GPU load. `DemandTracker` keeps the counts per model and answers when the
next write is due under the contract's rate limits; `lease_body` builds the object. The
writer (`kube.DemandWriter`) does the I/O. Times are arguments: monotonic `now` for rate
limits, wall-clock `wall` for renewTime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from siesta.api.contract import (
    API_VERSION,
    BRIDGE_IN_FLIGHT_ANNOTATION,
    IN_FLIGHT_ANNOTATION,
    KIND,
    LEASE_DURATION_SECONDS,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    PENDING_ANNOTATION,
    ModelKey,
    demand_lease_name,
)

MANAGED_BY = "siesta-gateway"

CHANGE_INTERVAL = 1.0  # at most once a second while the pending count changes
HOLDING_INTERVAL = 10.0  # renew every 10 s while requests are held
WARM_INTERVAL = 15.0  # at most every 15 s for warm traffic


def warm_interval(idle_timeout: float | None) -> float:
    """15 s, or a third of a shorter idleTimeout: a warm model must not look idle."""
    return WARM_INTERVAL if idle_timeout is None else min(WARM_INTERVAL, idle_timeout / 3)


def micro_time(wall: float) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Counts:
    pending: int = 0
    in_flight: int = 0  # on the model's own (GPU) replicas
    bridge_in_flight: int | None = None
    """On its CPU bridge; None: the model has no bridge (its Lease carries no such count)."""

    @property
    def active(self) -> bool:
        """Requests held or being served, on either kind of replica."""
        return self.pending > 0 or self.in_flight > 0 or bool(self.bridge_in_flight)


@dataclass(frozen=True)
class Written:
    counts: Counts
    at: float  # monotonic
    seen: float  # wall clock renewTime written


@dataclass
class ModelDemand:
    counts: Counts = Counts()
    last_seen: float | None = None  # wall clock of the latest request
    written: Written | None = None
    failed_at: float | None = None  # monotonic time of the last failed write
    warm_interval: float = WARM_INTERVAL


RETRY_AFTER_FAILURE = 1.0


def due_at(demand: ModelDemand, now: float) -> float | None:
    """Monotonic time at which a write is due (<= now: write now); None: nothing to write."""
    if demand.last_seen is None:
        return None
    written = demand.written
    counts = demand.counts
    if written is None:
        due = now
    elif counts.pending > 0 and written.counts.pending == 0:
        due = now  # a model just went cold for this gateway: wake it at once
    else:
        candidates = []
        if counts.pending != written.counts.pending:
            candidates.append(written.at + CHANGE_INTERVAL)
        if counts.pending > 0:
            candidates.append(written.at + HOLDING_INTERVAL)
        if (
            counts.in_flight != written.counts.in_flight
            or demand.last_seen > written.seen
            or counts.active  # a lone long stream: renewed before the Lease lapses (30 s)
        ):
            candidates.append(written.at + demand.warm_interval)
        if counts.bridge_in_flight != written.counts.bridge_in_flight:
            # The operator puts the bridge back to sleep when its last stream ends: soon.
            candidates.append(written.at + CHANGE_INTERVAL)
        if not candidates:
            return None
        due = min(candidates)
    if demand.failed_at is not None:
        due = max(due, demand.failed_at + RETRY_AFTER_FAILURE)
    return due


def renew_time(demand: ModelDemand, wall: float) -> float:
    """Requests that are held or in flight (the bridge's too) are still being seen: renew to
    now."""
    if demand.counts.active or demand.last_seen is None:
        return wall
    return demand.last_seen


class DemandTracker:
    """Counts per model, and the bookkeeping of writes."""

    def __init__(self) -> None:
        self.models: dict[ModelKey, ModelDemand] = {}

    def _get(self, model: ModelKey) -> ModelDemand:
        return self.models.setdefault(model, ModelDemand())

    def seen(self, model: ModelKey, wall: float, interval: float = WARM_INTERVAL) -> None:
        demand = self._get(model)
        demand.warm_interval = interval
        demand.last_seen = wall if demand.last_seen is None else max(demand.last_seen, wall)

    def set_counts(
        self, model: ModelKey, pending: int, in_flight: int, bridge_in_flight: int | None = None
    ) -> None:
        demand = self._get(model)
        if bridge_in_flight is None and demand.counts.bridge_in_flight is not None:
            bridge_in_flight = 0  # once on the Lease, the count stays (a merge patch keeps it)
        demand.counts = Counts(pending, in_flight, bridge_in_flight)

    def due(self, now: float) -> list[ModelKey]:
        return [
            m for m, d in self.models.items() if (at := due_at(d, now)) is not None and at <= now
        ]

    def next_due(self, now: float) -> float | None:
        times = [at for d in self.models.values() if (at := due_at(d, now)) is not None]
        return min(times) if times else None

    def wrote(self, model: ModelKey, counts: Counts, seen: float, now: float) -> None:
        demand = self._get(model)
        demand.written = Written(counts, now, seen)
        demand.failed_at = None

    def failed(self, model: ModelKey, now: float) -> None:
        self._get(model).failed_at = now


def lease_body(
    *,
    namespace: str,
    model_name: str,
    model_uid: str,
    pod_name: str,
    counts: Counts,
    renew_wall: float,
) -> dict[str, Any]:
    """The whole Lease, as created; a later write patches spec.renewTime and annotations."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": demand_lease_name(model_name, pod_name),
            "namespace": namespace,
            "labels": {MODEL_LABEL: model_name, MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": lease_annotations(counts),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": model_name,
                    "uid": model_uid,
                }
            ],
        },
        "spec": {
            "holderIdentity": pod_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(renew_wall),
        },
    }


def lease_annotations(counts: Counts) -> dict[str, str]:
    annotations = {
        PENDING_ANNOTATION: str(counts.pending),
        IN_FLIGHT_ANNOTATION: str(counts.in_flight),
    }
    if counts.bridge_in_flight is not None:
        annotations[BRIDGE_IN_FLIGHT_ANNOTATION] = str(counts.bridge_in_flight)
    return annotations


def lease_patch(pod_name: str, counts: Counts, renew_wall: float) -> dict[str, Any]:
    """A merge patch that renews an existing Lease."""
    return {
        "metadata": {"annotations": lease_annotations(counts)},
        "spec": {
            "holderIdentity": pod_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(renew_wall),
        },
    }
