"""Schedule windows: the replica floor at any instant, and when it next changes.

Cron expressions are evaluated on the wall clock of the schedule's IANA time zone, so
"0 8 * * 1-5" means 08:00 local on both sides of a daylight-saving change. A start that
falls into the hour skipped in spring happens one hour later on the wall clock (as cron
does); a start in the hour repeated in autumn happens once, at its first occurrence.
`duration` windows are measured on the wall clock too (22:00 + 10h = 08:00).

Closed days (schedule.holidays: public holidays of a country and subdivision, plus extra
dates) are calendar days in the schedule's time zone on which no window *opens*: an
occurrence whose start falls on one is skipped, prewarm included, while one opened the day
before runs to its end.

Pure: time is always an argument. Reading the time-zone database and the holidays
package's built-in rules are the only lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from siesta.api.models import Holidays, Schedule, ScheduleWindow

# How far ahead next_change looks. A change further away is found on a later look: the
# caller re-evaluates at the horizon (see decide), so a yearly window still opens on time.
SEARCH_HORIZON = timedelta(days=8)
_MAX_BOUNDARIES = 2000
# Consecutive closed starts skipped before giving up (a daily window and a year of dates).
_MAX_SKIPPED_STARTS = 800


class ScheduleError(ValueError):
    """The schedule cannot be evaluated (unknown time zone, invalid cron)."""


@dataclass(frozen=True)
class FloorAt:
    """The schedule's floor at an instant, and the window that sets it (if any)."""

    replicas: int
    window: str | None
    prewarming: bool = False
    holiday: str | None = None  # the closed day's name, when it keeps a window shut


@dataclass(frozen=True)
class FloorChange:
    time: datetime
    floor: FloorAt


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from error


_REFERENCE = datetime(2000, 1, 1)  # any fixed instant: only used to see that a cron can match


def _check_cron(expression: str, where: str) -> None:
    if not croniter.is_valid(expression):
        raise ScheduleError(f"{where}: invalid cron expression {expression!r}")
    try:
        croniter(expression, _REFERENCE).get_next(datetime)
    except CroniterBadDateError as error:
        raise ScheduleError(
            f"{where}: invalid cron expression {expression!r}: it never matches"
        ) from error


def check_holiday_region(country: str, subdivision: str | None) -> None:
    """Raise ScheduleError unless the `holidays` package knows the country (and subdivision).

    Checked here, not by the API: a name a later package version drops must not make the
    whole spec invalid; the schedule is reported invalid and the rest keeps working.
    """
    import holidays  # only when a calendar is given: the package is large

    supported: dict[str, list[str]] = holidays.list_supported_countries()
    if country not in supported:
        raise ScheduleError(
            f"holidays.country: {country!r} is not a country the holidays package knows "
            "(ISO 3166-1 alpha-2, e.g. DE, AT, US)"
        )
    if subdivision and subdivision not in supported[country]:
        known = ", ".join(supported[country]) or "none"
        raise ScheduleError(
            f"holidays.subdivision: {subdivision!r} is not a subdivision of {country} "
            f"(known: {known})"
        )


class ClosedDays:
    """Which calendar days are closed, and why: public holidays plus extra dates."""

    def __init__(self, calendar: Holidays | None) -> None:
        self.extra = {date.fromisoformat(value) for value in calendar.dates} if calendar else set()
        self._public: Any = None
        if calendar is not None and calendar.country:
            check_holiday_region(calendar.country, calendar.subdivision)
            import holidays  # the package's rules are data: computing them does no I/O

            self._public = holidays.country_holidays(
                calendar.country, subdiv=calendar.subdivision, language="en_US"
            )

    def __bool__(self) -> bool:
        return bool(self.extra) or self._public is not None

    def name(self, day: date) -> str | None:
        """Why `day` is closed, or None when it is open."""
        if self._public is not None:
            public: str | None = self._public.get(day)
            if public:
                return public
        if day in self.extra:
            return "closed (holidays.dates)"
        return None


class CompiledWindow:
    """One window with its crons parsed, answering questions in local wall-clock time."""

    def __init__(self, window: ScheduleWindow, zone: ZoneInfo, closed: ClosedDays) -> None:
        _check_cron(window.start, f"window {window.name!r} start")
        if window.end:
            _check_cron(window.end, f"window {window.name!r} end")
        self.window = window
        self.zone = zone
        self.length = window.duration_delta
        self.closed = closed

    def closed_reason(self, start: datetime) -> str | None:
        """Why the occurrence starting at `start` does not open (None: it opens)."""
        if not self.closed:
            return None
        return self.closed.name(start.astimezone(self.zone).date())

    def last_open_start(self, moment: datetime) -> datetime | None:
        """The latest start at or before `moment` that is not on a closed day."""
        start = self.last_start(moment)
        for _ in range(_MAX_SKIPPED_STARTS):
            if self.closed_reason(start) is None:
                return start
            start = self.last_start(start - timedelta(seconds=1))
        return None

    def next_open_start(self, moment: datetime) -> datetime | None:
        """The first start strictly after `moment` that is not on a closed day."""
        start = self.next_start(moment)
        for _ in range(_MAX_SKIPPED_STARTS):
            if self.closed_reason(start) is None:
                return start
            start = self.next_start(start)
        return None

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _aware(self, local: datetime) -> datetime:
        # fold=0: a skipped wall time maps one hour later, a repeated one to its first instance.
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def last_start(self, moment: datetime) -> datetime:
        """The latest start at or before `moment` (as a UTC instant)."""
        occurrences = croniter(self.window.start, self._local(moment) + timedelta(seconds=1))
        while True:
            # A start in a skipped wall-clock hour maps to a later instant: step past it.
            previous = self._aware(occurrences.get_prev(datetime))
            if previous <= moment:
                return previous

    def next_start(self, moment: datetime) -> datetime:
        """The first start strictly after `moment`."""
        following: datetime = croniter(self.window.start, self._local(moment)).get_next(datetime)
        return self._aware(following)

    def end_of(self, start: datetime) -> datetime:
        """Where the occurrence that opened at `start` closes."""
        local_start = self._local(start)
        if self.length is not None:
            return self._aware(local_start + self.length)
        assert self.window.end is not None
        closing: datetime = croniter(self.window.end, local_start).get_next(datetime)
        return self._aware(closing)


class CompiledSchedule:
    """A validated schedule. Construct once per spec; every method is pure."""

    def __init__(
        self, schedule: Schedule, base_min: int = 0, max_replicas: int | None = None
    ) -> None:
        self.zone = _zone(schedule.timezone)
        self.prewarm = schedule.prewarm_delta
        self.base_min = base_min
        self.max_replicas = max_replicas
        self.closed = ClosedDays(schedule.holidays)
        compiled = [
            CompiledWindow(window, self.zone, self.closed) for window in schedule.windows
        ]  # validates all
        # A window that cannot lift the floor above replicas.min never changes the answer.
        self.windows = [
            c for c in compiled if self._clamp(c.window.min_replicas) > self._clamp(base_min)
        ]

    def _clamp(self, replicas: int) -> int:
        return replicas if self.max_replicas is None else min(replicas, self.max_replicas)

    def floor_at(self, moment: datetime) -> FloorAt:
        """Floor = max(replicas.min, every open window's minReplicas); prewarm opens windows early."""
        best = FloorAt(self._clamp(self.base_min), None)
        holiday: str | None = None
        for compiled in self.windows:
            # Ends grow with starts, so only the latest start (on an open day) can be open.
            latest = compiled.last_start(moment + self.prewarm)
            reason = compiled.closed_reason(latest)
            if reason is not None and moment < compiled.end_of(latest):
                holiday = holiday or reason  # this occurrence would be open but for the day
            start = latest if reason is None else compiled.last_open_start(latest)
            if start is None or moment >= compiled.end_of(start):
                continue
            if compiled.window.min_replicas > best.replicas:
                prewarming = moment < start
                best = FloorAt(
                    self._clamp(compiled.window.min_replicas), compiled.window.name, prewarming
                )
        if best.window is None and holiday is not None:
            return FloorAt(best.replicas, None, holiday=holiday)
        return best

    def closed_day(self, moment: datetime) -> str | None:
        """Why the calendar day of `moment` (in the schedule's zone) is closed, if it is."""
        return self.closed.name(moment.astimezone(self.zone).date()) if self.closed else None

    def next_boundary(self, moment: datetime) -> datetime | None:
        """The next instant after `moment` at which some window opens or closes."""
        candidates: list[datetime] = []
        for compiled in self.windows:
            following = compiled.next_open_start(moment + self.prewarm)
            if following is not None:
                candidates.append(following - self.prewarm)
            latest = compiled.last_open_start(moment + self.prewarm)
            if latest is not None:
                end = compiled.end_of(latest)
                if end > moment:
                    candidates.append(end)
        later = [c for c in candidates if c > moment]
        return min(later) if later else None

    def next_change(
        self, moment: datetime, horizon: timedelta = SEARCH_HORIZON
    ) -> FloorChange | None:
        """The next instant at which the floor (or the window that sets it) changes."""
        current = self.floor_at(moment)
        cursor = moment
        for _ in range(_MAX_BOUNDARIES):
            boundary = self.next_boundary(cursor)
            if boundary is None or boundary - moment > horizon:
                return None
            floor = self.floor_at(boundary)
            if (floor.replicas, floor.window) != (current.replicas, current.window):
                return FloorChange(boundary, floor)
            cursor = boundary
        return None

    def changes_between(self, start: datetime, end: datetime) -> list[FloorChange]:
        """The floor at `start`, then every change up to `end` (for `siesta preview`)."""
        changes = [FloorChange(start, self.floor_at(start))]
        while True:
            change = self.next_change(changes[-1].time, horizon=end - changes[-1].time)
            if change is None or change.time > end:
                return changes
            changes.append(change)

    def closed_days_between(self, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
        """Each closed day from `start` to `end`: (its local midnight as UTC, why it is closed)."""
        if not self.closed:
            return []
        days: list[tuple[datetime, str]] = []
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            reason = self.closed.name(day)
            if reason is not None:
                midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
                days.append((max(midnight.astimezone(UTC), start), reason))
            day += timedelta(days=1)
        return days
