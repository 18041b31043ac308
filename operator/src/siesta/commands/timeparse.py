"""Parsing and printing instants on the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from siesta.errors import UsageError


def parse_instant(text: str, option: str) -> datetime:
    """ISO 8601 with a UTC offset or Z; a bare local time would be ambiguous."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise UsageError(
            f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-11-25T09:00:00Z)"
        ) from error
    if moment.tzinfo is None:
        raise UsageError(
            f"{option}: {text!r} needs a UTC offset or Z (e.g. 2026-11-25T09:00:00+01:00)"
        )
    return moment.astimezone(UTC)


def in_zone(moment: datetime, zone_name: str) -> str:
    """Render in the schedule's time zone (with its offset) when the zone is valid."""
    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).isoformat()
