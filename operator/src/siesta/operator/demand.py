"""Gateway demand (coordination.k8s.io Leases, docs/contracts.md) as policy signals. Pure.

Pending and in-flight counts come only from Leases renewed within their
leaseDurationSeconds (a gateway that died stops counting); the last request time is the
newest renewTime of any Lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from siesta.api.contract import (
    BRIDGE_IN_FLIGHT_ANNOTATION,
    IN_FLIGHT_ANNOTATION,
    LEASE_DURATION_SECONDS,
    PENDING_ANNOTATION,
)
from siesta.operator.observe import parse_time


@dataclass(frozen=True)
class LeaseView:
    """What the operator keeps of a demand Lease (the value of the leases index)."""

    name: str
    renew_time: datetime | None
    duration_seconds: int
    pending: int
    in_flight: int
    bridge_in_flight: int = 0
    """Requests on the model's CPU bridge (BRIDGE_IN_FLIGHT_ANNOTATION), not in `in_flight`."""

    @property
    def expires(self) -> datetime | None:
        if self.renew_time is None:
            return None
        return self.renew_time + timedelta(seconds=self.duration_seconds)


@dataclass(frozen=True)
class Demand:
    pending_requests: int = 0
    in_flight_requests: int = 0
    bridge_in_flight_requests: int = 0
    """Of the model's CPU bridge (docs/bridge.md): it sleeps again once this is 0."""
    last_request_time: datetime | None = None
    next_expiry: datetime | None = None
    """When a Lease that counts now stops counting (the answer may change then)."""
    reporting: bool = False
    """Some gateway's Lease is current: its in-flight count is a measurement, not silence."""


def _count(annotations: Mapping[str, Any], key: str) -> int:
    try:
        return max(int(str(annotations.get(key, "0")).strip() or "0"), 0)
    except ValueError:
        return 0


def lease_view(body: Mapping[str, Any]) -> LeaseView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    annotations = meta.get("annotations") or {}
    renew = spec.get("renewTime") or spec.get("acquireTime")
    return LeaseView(
        name=str(meta.get("name", "")),
        renew_time=parse_time(renew) if isinstance(renew, str) else None,
        duration_seconds=int(spec.get("leaseDurationSeconds") or LEASE_DURATION_SECONDS),
        pending=_count(annotations, PENDING_ANNOTATION),
        in_flight=_count(annotations, IN_FLIGHT_ANNOTATION),
        bridge_in_flight=_count(annotations, BRIDGE_IN_FLIGHT_ANNOTATION),
    )


def demand(leases: Iterable[LeaseView], now: datetime) -> Demand:
    pending = in_flight = bridge_in_flight = 0
    reporting = False
    last: datetime | None = None
    expiries: list[datetime] = []
    for lease in leases:
        if lease.renew_time is not None and (last is None or lease.renew_time > last):
            last = lease.renew_time
        expires = lease.expires
        if expires is None or expires < now:
            continue
        reporting = True
        pending += lease.pending
        in_flight += lease.in_flight
        bridge_in_flight += lease.bridge_in_flight
        if lease.pending or lease.in_flight or lease.bridge_in_flight:
            expiries.append(expires)
    if last is not None and last > now:
        last = now  # a gateway clock ahead of ours must not extend the idle timeout
    if in_flight > 0 or bridge_in_flight > 0:
        last = now  # requests still running: the model is in use right now
    return Demand(
        pending,
        in_flight,
        bridge_in_flight,
        last,
        min(expiries) if expiries else None,
        reporting,
    )
