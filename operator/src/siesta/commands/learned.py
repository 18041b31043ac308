"""What `idleTimeout: auto` has learned, for `siesta explain` and `siesta preview`.

From past requests (a trace file: what the operator would have counted) or from the
status of a ModelDeployment saved with `kubectl get md NAME -o yaml` (what it did count).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from siesta.api.models import ModelDeployment
from siesta.errors import UsageError
from siesta.operator.status import memory_from_status
from siesta.policy.idle import GapHistory, history_from_requests, learned_idle_timeout
from siesta.policy.prewarm import DemandPattern, learned_prewarm, observe_arrival
from siesta.sim.traces import TraceError, load_trace


@dataclass(frozen=True)
class Learned:
    gaps: GapHistory
    last_request: datetime | None
    source: str
    pattern: DemandPattern = field(default_factory=DemandPattern)


def add_requests_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requests",
        type=Path,
        metavar="TRACE.csv",
        help="for idleTimeout: auto, learn from these past requests (a trace; those before "
        "--at or --to count); default: the file's status.requestGaps (kubectl get md -o yaml)",
    )


def learned(md: ModelDeployment, requests: Path | None, before: datetime) -> Learned:
    zone = md.spec.schedule.timezone
    if requests is not None:
        try:
            trace = load_trace(requests)
        except TraceError as error:
            raise UsageError(str(error)) from error
        arrivals = [r.arrival for r in trace.requests if r.arrival < before]
        gaps, last = history_from_requests(arrivals, zone)
        pattern, previous = DemandPattern(), None
        for arrival in arrivals:
            pattern = observe_arrival(pattern, previous, arrival, zone)
            previous = arrival
        return Learned(gaps, last, f"{len(arrivals)} requests in {requests.name}", pattern)
    if md.status is not None and (md.status.request_gaps or md.status.demand_pattern):
        memory = memory_from_status(md.status.model_dump(by_alias=True, exclude_none=True))
        return Learned(
            memory.request_gaps, memory.last_request_time, "the status", memory.demand_pattern
        )
    return Learned(GapHistory(), None, "nothing (no --requests, no status)")


@dataclass(frozen=True)
class HourlyTimeout:
    start: datetime
    timeout: timedelta
    reason: str


def hourly_timeouts(
    md: ModelDeployment, seen: Learned, start: datetime, end: datetime
) -> list[HourlyTimeout]:
    """The learned idle timeout after a request in each hour of [start, end), one entry per change."""
    bounds = md.spec.scaling.auto_idle_timeout_settings
    zone = md.spec.schedule.timezone
    entries: list[HourlyTimeout] = []
    moment = start.replace(minute=0, second=0, microsecond=0)
    while moment < end:
        found = learned_idle_timeout(
            seen.gaps, moment, zone, bounds.min_delta, bounds.max_delta, bounds.wake_cost_delta
        )
        shown = max(moment, start)
        if not entries or entries[-1].timeout != found.timeout:
            entries.append(HourlyTimeout(shown, found.timeout, found.reason))
        moment += timedelta(hours=1)
    return entries


def prewarm_changes(
    md: ModelDeployment, seen: Learned, start: datetime, end: datetime
) -> list[tuple[datetime, bool, str]]:
    """When schedule.learnedPrewarm would switch on and off in [start, end), and why."""
    settings = md.spec.schedule.learned_prewarm
    if settings is None or not settings.enabled:
        return []
    zone = md.spec.schedule.timezone
    changes: list[tuple[datetime, bool, str]] = []
    moment, active = start, False
    while moment < end:
        found = learned_prewarm(seen.pattern, moment, zone, settings.lead_delta)
        if found.active != active:
            changes.append((moment, found.active, found.reason))
            active = found.active
        if found.next_change is None or found.next_change <= moment:
            moment += timedelta(days=1)  # nothing within a day: look a day later
        else:
            moment = found.next_change
    return changes
