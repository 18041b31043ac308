"""`scaling.idleTimeout: auto`: an idle timeout learned from the gaps between requests. Pure.

Every time the last request time moves on, the gap since the previous request is counted
in a small histogram, in the row of the hour (and weekday or weekend) in which the earlier
request came, on the schedule's clock. After a request, the timeout is the one that would
have cost least over the gaps seen at that hour:

    cost(T) = sum over gaps g <= T of g  +  sum over gaps g > T of (T + wakeCost)

A gap that ends within T costs the idle GPU time until it ends; a longer one costs T of
idle time and then a wake (node boot, model load, users waiting), counted as `wakeCost`.
So a lone request at an hour whose gaps are either a minute or many hours gets the lower
bound, and an hour whose requests come every few minutes keeps the model warm across them.
T is a bucket edge clamped to [min, max]; with too few gaps at an hour its neighbours
lend theirs (then the whole kind of day, then every hour); with too few anywhere, the upper
bound (the model stays warm while it learns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from siesta.api.durations import format_duration

# Upper edges of the gap buckets, seconds; the last bucket holds every longer gap.
GAP_EDGES: tuple[int, ...] = (
    30, 60, 120, 180, 300, 420, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 28800,
)  # fmt: skip
BUCKETS = len(GAP_EDGES) + 1
MIN_SAMPLES = 8
"""Gaps an hour needs before its own row decides (else neighbouring hours join in)."""
MIN_DAY_SAMPLES = 3
"""Gaps a whole kind of day (weekday, weekend) needs before it stops borrowing the other's."""
ROW_CAP = 256
"""A row whose total passes this is halved: old weeks fade, recent ones weigh more."""
WEEKDAY, WEEKEND = "weekday", "weekend"


def row_key(moment: datetime, zone_name: str) -> str:
    """The histogram row of an instant: weekday or weekend, and the hour, on the local clock."""
    local = moment.astimezone(_zone(zone_name))
    day = WEEKEND if local.weekday() >= 5 else WEEKDAY
    return f"{day}-{local.hour:02d}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")  # an invalid zone is reported by the schedule's condition


def bucket_of(gap_seconds: float) -> int:
    for index, edge in enumerate(GAP_EDGES):
        if gap_seconds <= edge:
            return index
    return len(GAP_EDGES)


def _representative(index: int) -> float:
    """The gap a bucket stands for: its middle (the last, open bucket: its lower edge)."""
    if index >= len(GAP_EDGES):
        return float(GAP_EDGES[-1])
    lower = GAP_EDGES[index - 1] if index else 0
    return (lower + GAP_EDGES[index]) / 2


@dataclass(frozen=True)
class GapHistory:
    """Counts of gaps per bucket, per row ("weekday-21"); kept in the status."""

    rows: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @classmethod
    def from_mapping(cls, rows: Mapping[str, object]) -> GapHistory:
        """From the status (unknown shapes are dropped: a bad row only costs learning)."""
        kept: list[tuple[str, tuple[int, ...]]] = []
        for key, counts in rows.items():
            if (
                isinstance(counts, list)
                and len(counts) == BUCKETS
                and all(isinstance(count, int) and count >= 0 for count in counts)
            ):
                kept.append((str(key), tuple(counts)))
        return cls(tuple(sorted(kept)))

    def as_mapping(self) -> dict[str, list[int]]:
        return {key: list(counts) for key, counts in self.rows}

    def row(self, key: str) -> tuple[int, ...]:
        for name, counts in self.rows:
            if name == key:
                return counts
        return (0,) * BUCKETS

    def total(self) -> int:
        return sum(sum(counts) for _, counts in self.rows)

    def record(self, key: str, gap_seconds: float) -> GapHistory:
        counts = list(self.row(key))
        counts[bucket_of(gap_seconds)] += 1
        if sum(counts) > ROW_CAP:
            counts = [count // 2 for count in counts]
        others = [(name, row) for name, row in self.rows if name != key]
        return GapHistory(tuple(sorted([*others, (key, tuple(counts))])))


def observe_request(
    history: GapHistory,
    previous_request: datetime | None,
    latest_request: datetime | None,
    zone_name: str,
) -> tuple[GapHistory, datetime | None]:
    """Count the gap when the last request time moves on; returns (history, last request)."""
    if latest_request is None:
        return history, previous_request
    if previous_request is None:
        return history, latest_request
    if latest_request <= previous_request:
        return history, previous_request
    gap = (latest_request - previous_request).total_seconds()
    return history.record(row_key(previous_request, zone_name), gap), latest_request


def history_from_requests(
    arrivals: Iterable[datetime], zone_name: str, history: GapHistory | None = None
) -> tuple[GapHistory, datetime | None]:
    """What the operator would have learned from these requests (sorted), and the last one."""
    history = history or GapHistory()
    last: datetime | None = None
    for arrival in arrivals:
        history, last = observe_request(history, last, arrival, zone_name)
    return history, last


def _pooled(history: GapHistory, key: str) -> tuple[tuple[int, ...], str]:
    """The row, or it with ever more neighbouring hours (same kind of day, then any day)."""
    day, hour_text = key.split("-")
    hour = int(hour_text)
    for spread in range(12):
        hours = {(hour + step) % 24 for step in range(-spread, spread + 1)}
        counts = _sum(history.row(f"{day}-{h:02d}") for h in hours)
        if sum(counts) >= MIN_SAMPLES:
            if spread == 0:
                return counts, f"{day} {hour:02d}h"
            return counts, f"{day} {hour:02d}h +/-{spread}h"
    # A kind of day with little traffic (the weekends of an office) is still its own
    # evidence: a few lone requests say more about it than the busy weekdays do.
    counts = _sum(history.row(f"{day}-{h:02d}") for h in range(24))
    if sum(counts) >= MIN_DAY_SAMPLES:
        return counts, f"any {day} hour"
    return _sum(counts for _, counts in history.rows), "any hour"


def _sum(rows: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    total = [0] * BUCKETS
    for counts in rows:
        for index, count in enumerate(counts):
            total[index] += count
    return tuple(total)


@dataclass(frozen=True)
class AutoIdleTimeout:
    timeout: timedelta
    reason: str
    """Why, for status.reasons: "idle timeout 3m (auto: ...)"."""


def _cost(counts: tuple[int, ...], timeout: float, wake_cost: float) -> float:
    cost = 0.0
    for index, count in enumerate(counts):
        gap = _representative(index)
        cost += count * (gap if gap <= timeout else timeout + wake_cost)
    return cost


def learned_idle_timeout(
    history: GapHistory,
    last_request: datetime | None,
    zone_name: str,
    minimum: timedelta,
    maximum: timedelta,
    wake_cost: timedelta,
) -> AutoIdleTimeout:
    """The idle timeout after `last_request`, from the gaps seen at its hour."""
    low, high = minimum.total_seconds(), max(maximum, minimum).total_seconds()
    bounds = f"bounds {format_duration(minimum)}-{format_duration(maximum)}"
    if last_request is None:
        why = "auto: no request seen yet, the upper bound"
        return AutoIdleTimeout(timedelta(seconds=high), f"{why} ({bounds})")
    if history.total() < MIN_SAMPLES:
        why = f"auto: learning ({history.total()} gaps seen, {MIN_SAMPLES} needed), the upper bound"
        return AutoIdleTimeout(timedelta(seconds=high), f"{why} ({bounds})")
    counts, where = _pooled(history, row_key(last_request, zone_name))
    seen = sum(counts)
    candidates = sorted({low, high, *(edge for edge in GAP_EDGES if low < edge < high)})
    wake = wake_cost.total_seconds()
    # The cheapest; among equals the shortest (fail toward GPU off).
    best = min(candidates, key=lambda timeout: (_cost(counts, timeout, wake), timeout))
    within = sum(count for index, count in enumerate(counts) if _representative(index) <= best)
    why = (
        f"auto: {within} of {seen} gaps after a request at {where} ended within "
        f"{format_duration(timedelta(seconds=best))}; a wake counted as "
        f"{format_duration(wake_cost)} ({bounds})"
    )
    return AutoIdleTimeout(timedelta(seconds=best), why)
