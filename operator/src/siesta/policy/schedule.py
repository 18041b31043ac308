"""Schedule windows: the replica floor at any instant, and when it next changes.

Cron expressions are evaluated on the wall clock of the schedule's IANA time zone, so
"0 8 * * 1-5" means 08:00 local on both sides of a daylight-saving change. A start that
falls into the hour skipped in spring happens one hour later on the wall clock (as cron
does); a start in the hour repeated in autumn happens once, at its first occurrence.
`duration` windows are measured on the wall clock too (22:00 + 10h = 08:00).

Pure: time is always an argument. Reading the time-zone database is the only lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from siesta.api.models import Schedule, ScheduleWindow

# How far ahead next_change looks. A change further away is found on a later look: the
# caller re-evaluates at the horizon (see decide), so a yearly window still opens on time.
SEARCH_HORIZON = timedelta(days=8)
_MAX_BOUNDARIES = 2000


class ScheduleError(ValueError):
    """The schedule cannot be evaluated (unknown time zone, invalid cron)."""


@dataclass(frozen=True)
class FloorAt:
    """The schedule's floor at an instant, and the window that sets it (if any)."""

    replicas: int
    window: str | None
    prewarming: bool = False


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


class CompiledWindow:
    """One window with its crons parsed, answering questions in local wall-clock time."""

    def __init__(self, window: ScheduleWindow, zone: ZoneInfo) -> None:
        _check_cron(window.start, f"window {window.name!r} start")
        if window.end:
            _check_cron(window.end, f"window {window.name!r} end")
        self.window = window
        self.zone = zone
        self.length = window.duration_delta

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
        compiled = [
            CompiledWindow(window, self.zone) for window in schedule.windows
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
        for compiled in self.windows:
            # Ends grow with starts, so only the latest start can still be open.
            start = compiled.last_start(moment + self.prewarm)
            if moment < compiled.end_of(start) and compiled.window.min_replicas > best.replicas:
                prewarming = moment < start
                best = FloorAt(
                    self._clamp(compiled.window.min_replicas), compiled.window.name, prewarming
                )
        return best

    def next_boundary(self, moment: datetime) -> datetime | None:
        """The next instant after `moment` at which some window opens or closes."""
        candidates: list[datetime] = []
        for compiled in self.windows:
            candidates.append(compiled.next_start(moment + self.prewarm) - self.prewarm)
            end = compiled.end_of(compiled.last_start(moment + self.prewarm))
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
