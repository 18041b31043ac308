"""GPU cost per ModelDeployment, measured from the pods and nodes it ran on. Pure.

Every sample (the operator's cost loop, about once a minute) sees which nodes the model's
pods are on. A node's time is split among the pods on it by the GPUs they request (a model
alone on a node pays the whole node). The share seen at one sample holds until the next,
so a change is counted at most one sample late, in both directions. Prices come from a
table (instance type x capacity type x region, chart values `cost.prices`).

Always-on is what the same time would have cost with at least one replica kept (replicas.min
if higher) on the node type the model last ran on (before its first run: the cheapest type
for spec.gpu.products), plus whatever the model really used beyond that: it is never below
the spend, and `saved` = always-on - spend.

Everything accumulates in `status.cost`, so an operator restart loses nothing it had
counted; a gap longer than MAX_GAP between samples (the operator was down) is counted only
up to MAX_GAP and the rest reported as unobserved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from siesta.api.contract import ModelKey

MAX_GAP = timedelta(minutes=10)
RECENT_WAKES = 64
"""Wakes kept in status.cost.wakes (for the p95 wake time)."""
DAYS_KEPT = 31
"""Finished days kept in status.cost.days (for `siesta report --since 7d`)."""
ON_DEMAND, SPOT = "on-demand", "spot"


@dataclass(frozen=True)
class NodeFacts:
    name: str
    instance_type: str = ""
    capacity_type: str = ON_DEMAND
    region: str = ""


@dataclass(frozen=True)
class PodFacts:
    """A running pod that requests GPUs, on a node."""

    node: str
    gpus: int
    model: ModelKey | None = None
    """The ModelDeployment it serves, or None (some other workload on the node)."""


def capacity_type(value: str) -> str:
    """Karpenter says `spot`/`on-demand`, EKS managed node groups `SPOT`/`ON_DEMAND`."""
    return SPOT if value.strip().lower() == SPOT else ON_DEMAND


@dataclass(frozen=True)
class PriceTable:
    """USD per instance-hour: region -> capacity type -> instance type -> price."""

    prices: Mapping[str, Mapping[str, Mapping[str, float]]]
    default_region: str = "us-east-1"

    def price(
        self, instance_type: str, capacity: str = ON_DEMAND, region: str = ""
    ) -> float | None:
        by_capacity = self.prices.get(region or self.default_region) or {}
        value = (by_capacity.get(capacity_type(capacity)) or {}).get(instance_type)
        return float(value) if value is not None else None


@dataclass(frozen=True)
class NodeUse:
    """A model's share of one node at a sample, and what that node costs."""

    node: str
    instance_type: str
    share: float
    price_per_hour: float | None
    """None: the price table does not know this node (its time is counted, not priced)."""


def node_uses(
    model: ModelKey, pods: Iterable[PodFacts], nodes: Mapping[str, NodeFacts], prices: PriceTable
) -> tuple[NodeUse, ...]:
    """The model's shares of the nodes its pods are on, split by GPUs requested."""
    requested: dict[str, int] = {}
    mine: dict[str, int] = {}
    for pod in pods:
        requested[pod.node] = requested.get(pod.node, 0) + pod.gpus
        if pod.model == model:
            mine[pod.node] = mine.get(pod.node, 0) + pod.gpus
    uses = []
    for name, gpus in sorted(mine.items()):
        facts = nodes.get(name, NodeFacts(name))
        price = prices.price(facts.instance_type, facts.capacity_type, facts.region)
        share = gpus / requested[name] if requested[name] else 0.0
        uses.append(NodeUse(name, facts.instance_type, share, price))
    return tuple(uses)


@dataclass(frozen=True)
class Totals:
    since: datetime
    node_seconds: float = 0.0
    spend: float = 0.0
    always_on: float = 0.0
    wakes: int = 0
    wakes_in_window: int = 0

    @property
    def saved(self) -> float:
        return self.always_on - self.spend

    def add(self, node_seconds: float, spend: float, always_on: float) -> Totals:
        return replace(
            self,
            node_seconds=self.node_seconds + node_seconds,
            spend=self.spend + spend,
            always_on=self.always_on + always_on,
        )


@dataclass(frozen=True)
class Wake:
    started: datetime
    seconds: float
    in_window: bool


@dataclass(frozen=True)
class CostState:
    """What status.cost keeps."""

    updated: datetime
    today: Totals
    week: Totals
    total: Totals
    uses: tuple[NodeUse, ...] = ()
    """The shares seen at `updated`: in force until the next sample."""
    always_on_per_hour: float | None = None
    """One replica's node cost on the node type the model last ran on."""
    unobserved_seconds: float = 0.0
    wakes: tuple[Wake, ...] = field(default_factory=tuple)
    days: tuple[Totals, ...] = field(default_factory=tuple)
    """Finished days, oldest first (the last DAYS_KEPT)."""


def last_days(state: CostState, count: int) -> Totals:
    """Today and the count - 1 days before it, summed (what is known of them)."""
    first = state.today.since - timedelta(days=count - 1)
    chosen = [day for day in state.days if day.since >= first - timedelta(hours=1)]
    total = Totals(min([day.since for day in chosen] + [state.today.since]))
    for day in (*chosen, state.today):
        total = replace(
            total.add(day.node_seconds, day.spend, day.always_on),
            wakes=total.wakes + day.wakes,
            wakes_in_window=total.wakes_in_window + day.wakes_in_window,
        )
    return total


def day_start(moment: datetime, zone_name: str) -> datetime:
    local = moment.astimezone(_zone(zone_name))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(moment: datetime, zone_name: str) -> datetime:
    """Monday 00:00 on the schedule's clock."""
    start = day_start(moment, zone_name)
    return (start - timedelta(days=start.weekday())).replace(hour=0)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def begin(created: datetime, now: datetime, zone_name: str) -> CostState:
    """A model seen for the first time: nothing counted yet, since its creation."""
    return CostState(
        updated=now,
        today=Totals(max(day_start(now, zone_name), created)),
        week=Totals(max(week_start(now, zone_name), created)),
        total=Totals(created),
    )


def _rates(uses: tuple[NodeUse, ...]) -> tuple[float, float]:
    """(node share, USD per hour) of a sample."""
    return sum(u.share for u in uses), sum(u.share * (u.price_per_hour or 0.0) for u in uses)


def replica_rate(uses: tuple[NodeUse, ...], replicas: int) -> float | None:
    """One replica's cost per hour, from a sample with running replicas (None if unpriced)."""
    priced = [u for u in uses if u.price_per_hour is not None]
    if replicas <= 0 or not priced:
        return None
    return sum(u.share * (u.price_per_hour or 0.0) for u in priced) / replicas


def advance(
    state: CostState,
    now: datetime,
    uses: tuple[NodeUse, ...],
    running: int,
    always_on_replicas: int,
    fallback_per_hour: float | None,
    zone_name: str,
) -> CostState:
    """Count the time since the last sample at the last sample's shares; then take `uses`."""
    elapsed = max((now - state.updated).total_seconds(), 0.0)
    counted = min(elapsed, MAX_GAP.total_seconds())
    shares, spend_rate = _rates(state.uses)
    base_rate = state.always_on_per_hour or fallback_per_hour or 0.0
    always_rate = max(spend_rate, base_rate * max(always_on_replicas, 1))

    def add(totals: Totals, seconds: float) -> Totals:
        return totals.add(
            shares * seconds, spend_rate * seconds / 3600, always_rate * seconds / 3600
        )

    def period(totals: Totals, start: datetime) -> tuple[Totals, Totals | None]:
        """(the period now, the one that ended during the interval, if one did)."""
        if start <= totals.since:
            return add(totals, counted), None
        # A new day or week began during the interval: each gets its part.
        after = min(counted, (now - start).total_seconds())
        return add(Totals(start), after), add(totals, counted - after)

    today, yesterday = period(state.today, day_start(now, zone_name))
    week, _ = period(state.week, week_start(now, zone_name))
    days = state.days if yesterday is None else (*state.days, yesterday)[-DAYS_KEPT:]
    return CostState(
        updated=now,
        today=today,
        week=week,
        total=add(state.total, counted),
        uses=uses,
        always_on_per_hour=replica_rate(uses, running) or state.always_on_per_hour,
        unobserved_seconds=state.unobserved_seconds + (elapsed - counted),
        wakes=state.wakes,
        days=days,
    )


def record_wake(state: CostState, wake: Wake) -> CostState:
    """A cold start finished (status.coldStart): count it once, in every period it began in."""
    if any(known.started == wake.started for known in state.wakes):
        return state

    def count(totals: Totals) -> Totals:
        if wake.started < totals.since:
            return totals
        return replace(
            totals,
            wakes=totals.wakes + 1,
            wakes_in_window=totals.wakes_in_window + int(wake.in_window),
        )

    return replace(
        state,
        today=count(state.today),
        week=count(state.week),
        total=count(state.total),
        wakes=(*state.wakes, wake)[-RECENT_WAKES:],
    )


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks (as `siesta simulate` reports waits)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- status.cost ------------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _totals_dict(totals: Totals) -> dict[str, Any]:
    return {
        "since": _time(totals.since),
        "nodeHours": round(totals.node_seconds / 3600, 6),
        "spend": round(totals.spend, 6),
        "alwaysOn": round(totals.always_on, 6),
        "saved": round(totals.saved, 6),
        "wakes": totals.wakes,
        "wakesInWindow": totals.wakes_in_window,
    }


def _totals(data: object) -> Totals | None:
    if not isinstance(data, Mapping):
        return None
    since = _parse(data.get("since"))
    if since is None:
        return None
    return Totals(
        since,
        node_seconds=float(data.get("nodeHours") or 0.0) * 3600,
        spend=float(data.get("spend") or 0.0),
        always_on=float(data.get("alwaysOn") or 0.0),
        wakes=int(data.get("wakes") or 0),
        wakes_in_window=int(data.get("wakesInWindow") or 0),
    )


def summary(state: CostState) -> str:
    """The printer column: this week's spend and savings."""
    week = state.week
    share = f" ({100 * week.saved / week.always_on:.0f}%)" if week.always_on > 0 else ""
    return f"${week.spend:.2f} (saved ${week.saved:.2f}{share})"


def to_status(state: CostState) -> dict[str, Any]:
    return {
        "updatedAt": _time(state.updated),
        "currency": "USD",
        "summary": summary(state),
        "today": _totals_dict(state.today),
        "week": _totals_dict(state.week),
        "total": _totals_dict(state.total),
        "nodes": [
            {
                "node": use.node,
                "instanceType": use.instance_type,
                "share": round(use.share, 6),
                "pricePerHour": use.price_per_hour,
            }
            for use in state.uses
        ],
        "alwaysOnPerHour": state.always_on_per_hour,
        "unobservedSeconds": round(state.unobserved_seconds, 3),
        "wakes": [
            {"startedAt": _time(w.started), "seconds": w.seconds, "inWindow": w.in_window}
            for w in state.wakes
        ],
        "days": [_totals_dict(day) for day in state.days],
    }


def from_status(data: object) -> CostState | None:
    """status.cost back (None if absent or unreadable: counting starts again from now)."""
    if not isinstance(data, Mapping):
        return None
    updated = _parse(data.get("updatedAt"))
    today, week, total = (_totals(data.get(key)) for key in ("today", "week", "total"))
    if updated is None or today is None or week is None or total is None:
        return None
    uses = tuple(
        NodeUse(
            str(item.get("node", "")),
            str(item.get("instanceType", "")),
            float(item.get("share") or 0.0),
            float(item["pricePerHour"]) if item.get("pricePerHour") is not None else None,
        )
        for item in data.get("nodes") or []
        if isinstance(item, Mapping)
    )
    wakes = tuple(
        Wake(started, float(item.get("seconds") or 0.0), bool(item.get("inWindow")))
        for item in data.get("wakes") or []
        if isinstance(item, Mapping) and (started := _parse(item.get("startedAt"))) is not None
    )
    rate = data.get("alwaysOnPerHour")
    days = tuple(day for item in data.get("days") or [] if (day := _totals(item)) is not None)
    return CostState(
        updated=updated,
        today=today,
        week=week,
        total=total,
        uses=uses,
        always_on_per_hour=float(rate) if rate is not None else None,
        unobserved_seconds=float(data.get("unobservedSeconds") or 0.0),
        wakes=wakes,
        days=days,
    )
