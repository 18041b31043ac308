"""Metrics of a simulation run, and the comparison as a table or JSON."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from siesta.api.models import ModelDeploymentSpec
from siesta.policy import CompiledSchedule, ScheduleError
from siesta.sim.engine import Outcome, SimResult


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class WaitStats:
    """Seconds from arrival until a replica started serving (or until a 503 at wakeTimeout)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, waits: Sequence[float]) -> WaitStats:
        return cls(
            len(waits),
            percentile(waits, 0.50),
            percentile(waits, 0.95),
            percentile(waits, 0.99),
            max(waits) if waits else None,
        )


@dataclass(frozen=True)
class PolicyReport:
    policy: str
    description: str
    node_hours: float
    cost: float
    share_of_always_on: float | None
    requests: int
    served: int
    timed_out: int
    rejected: int
    cold_starts: int
    cold_starts_in_window: int
    pod_starts: int
    nodes_started: int
    decisions: int
    waits: WaitStats
    waits_in_window: WaitStats
    first_token_at_zero: WaitStats = field(default_factory=lambda: WaitStats.of([]))
    """Arrival -> first token of the requests that arrived with no GPU replica ready."""
    gpu_starts: int = 0
    """Times the GPU replicas went from zero to more (wakes and window openings)."""
    bridge: bool = False
    bridge_starts: int = 0
    bridge_node_hours: float = 0.0
    bridge_cost: float = 0.0
    served_by_bridge: int = 0
    total_cost: float = 0.0
    """GPU and CPU nodes together, USD."""
    cost_share_of_always_on: float | None = None
    """total_cost against always-on's GPU cost."""


def starts(timeline: Sequence[tuple[datetime, int]], start: datetime) -> int:
    """Changes from zero to more replicas after `start` (a timeline of (time, replicas))."""
    count, previous = 0, None
    for moment, replicas in timeline:
        if moment > start and previous == 0 and replicas > 0:
            count += 1
        previous = replicas
    return count


def window_classifier(
    spec: ModelDeploymentSpec, start: datetime, end: datetime
) -> Callable[[datetime], bool]:
    """Whether an instant is inside one of the spec's windows (prewarm not counted)."""
    plain = spec.schedule.model_copy(update={"prewarm": None})
    try:
        schedule = CompiledSchedule(plain, 0, spec.replicas.max)
    except ScheduleError:
        return lambda _moment: False
    changes = schedule.changes_between(start, end)
    times = [change.time for change in changes]
    inside = [change.floor.window is not None for change in changes]

    def classify(moment: datetime) -> bool:
        index = bisect.bisect_right(times, moment) - 1
        return inside[index] if index >= 0 else False

    return classify


def summarize(
    result: SimResult,
    description: str,
    in_window: Callable[[datetime], bool],
    always_on_node_hours: float | None = None,
) -> PolicyReport:
    requests = result.requests
    waits = [w for r in requests if (w := r.wait_seconds) is not None]
    window_waits = [
        w for r in requests if (w := r.wait_seconds) is not None and in_window(r.arrival)
    ]
    node_hours = result.node_seconds() / 3600.0
    share = node_hours / always_on_node_hours if always_on_node_hours else None
    cost = node_hours * result.world.price_per_hour
    bridge_hours = result.bridge_node_seconds() / 3600.0
    bridge_cost = bridge_hours * result.bridge.price_per_hour if result.bridge else 0.0
    always_on_cost = (always_on_node_hours or 0.0) * result.world.price_per_hour
    at_zero = [w for r in requests if r.at_zero and (w := r.first_token_wait) is not None]
    # Pods that were there at the start do not count as starts.
    started = [pod for pod in result.pods if pod.created > result.start]
    new_nodes = [node for node in result.nodes if node.requested > result.start]
    return PolicyReport(
        policy=result.policy,
        description=description,
        node_hours=node_hours,
        cost=cost,
        share_of_always_on=share,
        requests=len(requests),
        served=sum(1 for r in requests if r.outcome == Outcome.SERVED),
        timed_out=sum(1 for r in requests if r.outcome == Outcome.TIMED_OUT),
        rejected=sum(1 for r in requests if r.outcome == Outcome.REJECTED),
        cold_starts=len(result.cold_starts),
        cold_starts_in_window=sum(1 for c in result.cold_starts if in_window(c.start)),
        pod_starts=len(started),
        nodes_started=len(new_nodes),
        decisions=len(result.decisions),
        waits=WaitStats.of(waits),
        waits_in_window=WaitStats.of(window_waits),
        first_token_at_zero=WaitStats.of(at_zero),
        gpu_starts=starts(result.replicas, result.start),
        bridge=result.bridge is not None,
        bridge_starts=starts(result.bridge_replicas, result.start),
        bridge_node_hours=bridge_hours,
        bridge_cost=bridge_cost,
        served_by_bridge=sum(1 for r in requests if r.served_by == "bridge"),
        total_cost=cost + bridge_cost,
        cost_share_of_always_on=(cost + bridge_cost) / always_on_cost if always_on_cost else None,
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f}s"
    if value < 600:
        return f"{value:.0f}s"
    return f"{value / 60:.0f}m"


def format_table(reports: Sequence[PolicyReport]) -> str:
    header = [
        "policy",
        "node-h",
        "vs always-on",
        "cost $",
        "cold starts (in window)",
        "wait p50",
        "p95",
        "p99",
        "p95 in window",
        "timeouts",
        "refused",
    ]
    bridged = any(report.bridge for report in reports)
    if bridged:
        header += [
            "CPU node-h",
            "total $",
            "$ vs always-on",
            "GPU starts",
            "first token at zero p50",
            "p95",
        ]
    rows = [header]
    for report in reports:
        share = "-" if report.share_of_always_on is None else f"{report.share_of_always_on:.1%}"
        rows.append(
            [
                report.policy,
                f"{report.node_hours:.1f}",
                share,
                f"{report.cost:.2f}",
                f"{report.cold_starts} ({report.cold_starts_in_window})",
                _seconds(report.waits.p50),
                _seconds(report.waits.p95),
                _seconds(report.waits.p99),
                _seconds(report.waits_in_window.p95),
                str(report.timed_out),
                str(report.rejected),
            ]
        )
        if bridged:
            cost_share = report.cost_share_of_always_on
            rows[-1] += [
                f"{report.bridge_node_hours:.1f}" if report.bridge else "-",
                f"{report.total_cost:.2f}",
                "-" if cost_share is None else f"{cost_share:.1%}",
                str(report.gpu_starts),
                _seconds(report.first_token_at_zero.p50),
                _seconds(report.first_token_at_zero.p95),
            ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def to_json(reports: Sequence[PolicyReport], meta: dict[str, Any]) -> dict[str, Any]:
    def camel(data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            head, *rest = key.split("_")
            name = head + "".join(part.capitalize() for part in rest)
            out[name] = camel(value) if isinstance(value, dict) else value
        return out

    return {**meta, "policies": [camel(asdict(report)) for report in reports]}
