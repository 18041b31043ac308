"""Prewarm from history (`schedule.learnedPrewarm`, off by default). Pure.

The operator counts, per kind of day (weekday, weekend) on the schedule's clock, the days
that had requests and the quarter-hours in which a request came after a quiet hour (the
request that finds a model asleep). A quarter-hour in which that happened on at least
MIN_DAYS days and on at least half of the days with requests is a recurring demand: the
model is woken `lead` before it and kept until the quarter-hour ends, as if a window
opened there. Kept in status.demandPattern, so an operator restart keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

QUIET = timedelta(hours=1)
"""A request after this long without one is a first request (it would wake the model)."""
SLOT = timedelta(minutes=15)
MIN_DAYS = 3
MIN_SHARE = 0.5
SLOTS_A_DAY = 96


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day_kind(local: datetime) -> str:
    return "weekend" if local.weekday() >= 5 else "weekday"


def slot_key(moment: datetime, zone_name: str) -> str:
    """'weekday-07:45': the kind of day and the quarter-hour, on the schedule's clock."""
    local = moment.astimezone(_zone(zone_name))
    return f"{_day_kind(local)}-{local.hour:02d}:{local.minute // 15 * 15:02d}"


@dataclass(frozen=True)
class DemandPattern:
    slots: tuple[tuple[str, int], ...] = ()
    """(slot key, days on which a first request came in it)."""
    days: tuple[tuple[str, int], ...] = ()
    """(kind of day, days with requests)."""
    last_day: str = ""
    """The local date of the last counted request (a new date counts a day)."""
    last_slot_day: str = ""
    """The local date and slot last counted, so one day counts a slot once."""

    @classmethod
    def from_status(cls, data: Mapping[str, object]) -> DemandPattern:
        def pairs(value: object) -> tuple[tuple[str, int], ...]:
            if not isinstance(value, Mapping):
                return ()
            return tuple(
                sorted((str(k), v) for k, v in value.items() if isinstance(v, int) and v >= 0)
            )

        return cls(
            pairs(data.get("slots")),
            pairs(data.get("days")),
            str(data.get("lastDay") or ""),
            str(data.get("lastSlotDay") or ""),
        )

    def as_status(self) -> dict[str, object]:
        return {
            "slots": dict(self.slots),
            "days": dict(self.days),
            "lastDay": self.last_day,
            "lastSlotDay": self.last_slot_day,
        }

    def slot_days(self, key: str) -> int:
        return dict(self.slots).get(key, 0)

    def days_with_requests(self, kind: str) -> int:
        return dict(self.days).get(kind, 0)


def _bump(pairs: tuple[tuple[str, int], ...], key: str) -> tuple[tuple[str, int], ...]:
    counts = dict(pairs)
    counts[key] = counts.get(key, 0) + 1
    return tuple(sorted(counts.items()))


def observe_arrival(
    pattern: DemandPattern,
    previous_request: datetime | None,
    latest_request: datetime | None,
    zone_name: str,
) -> DemandPattern:
    """Count a new day, and a first request after a quiet hour, when the last request moves on."""
    if latest_request is None or (
        previous_request is not None and latest_request <= previous_request
    ):
        return pattern
    local = latest_request.astimezone(_zone(zone_name))
    date = local.date().isoformat()
    if date != pattern.last_day:
        pattern = replace(pattern, days=_bump(pattern.days, _day_kind(local)), last_day=date)
    quiet = previous_request is None or latest_request - previous_request >= QUIET
    slot = slot_key(latest_request, zone_name)
    if quiet and pattern.last_slot_day != f"{date} {slot}":
        pattern = replace(pattern, slots=_bump(pattern.slots, slot), last_slot_day=f"{date} {slot}")
    return pattern


@dataclass(frozen=True)
class LearnedPrewarm:
    active: bool
    reason: str
    next_change: datetime | None


def _recurring(pattern: DemandPattern, key: str) -> tuple[int, int] | None:
    """(days with a first request in the slot, days with requests) if it recurs."""
    seen = pattern.slot_days(key)
    days = pattern.days_with_requests(key.split("-")[0])
    if seen >= MIN_DAYS and days and seen / days >= MIN_SHARE:
        return seen, days
    return None


def learned_prewarm(
    pattern: DemandPattern, now: datetime, zone_name: str, lead: timedelta
) -> LearnedPrewarm:
    """Whether a recurring first request is due (within `lead` before its quarter-hour, or
    in it), why, and when the answer next changes (looking a week ahead)."""
    zone = _zone(zone_name)
    local = now.astimezone(zone)
    slot_start = local.replace(minute=local.minute // 15 * 15, second=0, microsecond=0)
    active: tuple[datetime, tuple[int, int]] | None = None
    upcoming: datetime | None = None
    # The current slot and the ones starting within `lead`, then a week ahead for next_change
    # (Monday's first request after a quiet weekend).
    if not any(_recurring(pattern, key) for key, _ in pattern.slots):
        return LearnedPrewarm(False, "", None)
    for step in range(7 * SLOTS_A_DAY + 1):
        start = (slot_start + step * SLOT).astimezone(zone)
        found = _recurring(pattern, slot_key(start, zone_name))
        if found is None:
            continue
        opens = start - lead
        if opens <= local < start + SLOT and active is None:
            active = (start, found)
        elif opens > local and upcoming is None:
            upcoming = opens
        if active is not None and upcoming is not None:
            break
    if active is None:
        return LearnedPrewarm(False, "", upcoming)
    start, (seen, days) = active
    kind = slot_key(start, zone_name).split("-")[0]
    end = start + SLOT
    reason = (
        f"learned prewarm: on {seen} of {days} {kind}s with requests the first one after a "
        f"quiet hour came at {start:%H:%M}-{end:%H:%M}"
    )
    ends = end.astimezone(now.tzinfo)
    nxt = min(t for t in (ends, upcoming) if t is not None) if upcoming else ends
    return LearnedPrewarm(True, reason, nxt)
