"""Request traces: read and check CSV files, and generate realistic ones from a seed.

Format (docs/cost-model.md): one request per line, sorted by time.

    # span: 2026-11-23T00:00:00+01:00 2026-11-30T00:00:00+01:00   (optional)
    timestamp,duration,tokens
    2026-11-23T08:03:11.250Z,7.4,
    2026-11-23T08:04:02Z,,180

`timestamp` is ISO 8601 with a UTC offset (or Z), or Unix seconds. `duration` is the
request's service time in seconds; `tokens` (generated tokens) is used when duration is
empty; neither means the world's default request time. The header is optional (without it
the columns are timestamp[,duration[,tokens]]); extra columns are ignored; lines starting
with `#` are comments. `# span: START END` sets the simulated period.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KNOWN_COLUMNS = ("timestamp", "duration", "tokens")


class TraceError(ValueError):
    """A trace that cannot be used; str() names the file and line."""


@dataclass(frozen=True)
class TraceRequest:
    arrival: datetime
    duration_seconds: float | None = None
    tokens: int | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Trace:
    requests: tuple[TraceRequest, ...]
    start: datetime | None = None
    """The simulated period, when the file states it (`# span:`)."""
    end: datetime | None = None
    source: str = "<trace>"


def _instant(text: str, where: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise TraceError(
            f"{where}: bad timestamp {text!r}: use ISO 8601 with an offset (2026-11-23T08:00:00Z) "
            "or Unix seconds"
        ) from error
    if moment.tzinfo is None:
        raise TraceError(f"{where}: timestamp {text!r} has no UTC offset; add Z or +01:00")
    return moment.astimezone(UTC)


def _number(text: str, column: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as error:
        raise TraceError(f"{where}: {column} {text!r} is not a number") from error
    if not math.isfinite(value):
        raise TraceError(f"{where}: {column} {text!r} is not a finite number")
    if value < 0:
        raise TraceError(f"{where}: negative {column} {text!r}")
    return value


def _span(comment: str, where: str) -> tuple[datetime, datetime] | None:
    body = comment.lstrip("#").strip()
    if not body.startswith("span:"):
        return None
    parts = body.removeprefix("span:").split()
    if len(parts) != 2:
        raise TraceError(f"{where}: '# span:' needs two timestamps, START END")
    start, end = _instant(parts[0], where), _instant(parts[1], where)
    if end <= start:
        raise TraceError(f"{where}: span end {parts[1]} is not after its start {parts[0]}")
    return start, end


def parse_trace(text: str, source: str = "<trace>") -> Trace:
    """Parse and check a trace; the first problem raises TraceError naming its line."""
    requests: list[TraceRequest] = []
    columns: list[str] | None = None
    span: tuple[datetime, datetime] | None = None
    previous: TraceRequest | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            span = _span(stripped, where) or span
            continue
        cells = next(csv.reader([raw]))
        if columns is None:
            lowered = [cell.strip().lower() for cell in cells]
            if lowered and lowered[0] == "timestamp":
                columns = lowered
                continue
            columns = list(KNOWN_COLUMNS)
        row = dict(zip(columns, cells, strict=False))
        if not row.get("timestamp", "").strip():
            raise TraceError(f"{where}: missing timestamp")
        arrival = _instant(row["timestamp"], where)
        duration = _number(row.get("duration", ""), "duration", where)
        tokens = _number(row.get("tokens", ""), "tokens", where)
        if tokens is not None and tokens != int(tokens):
            raise TraceError(f"{where}: tokens {row['tokens'].strip()!r} is not a whole number")
        request = TraceRequest(arrival, duration, None if tokens is None else int(tokens), number)
        if previous is not None and arrival < previous.arrival:
            raise TraceError(
                f"{where}: timestamp {row['timestamp'].strip()} is earlier than "
                f"line {previous.line}'s; the trace must be sorted by time"
            )
        requests.append(request)
        previous = request
    if not requests:
        raise TraceError(f"{source}: no requests in the trace")
    if span is not None and not (
        span[0] <= requests[0].arrival and requests[-1].arrival <= span[1]
    ):
        raise TraceError(f"{source}: requests fall outside the '# span:' period")
    start, end = span if span else (None, None)
    return Trace(tuple(requests), start, end, source)


def load_trace(path: Path) -> Trace:
    try:
        text = path.read_text()
    except OSError as error:
        raise TraceError(f"{path}: cannot read: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise TraceError(f"{path}: not a text file") from error
    return parse_trace(text, str(path))


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_trace(trace: Trace, header_comments: Iterable[str] = ()) -> str:
    """The CSV text of a trace (what `siesta trace generate` writes)."""
    out = io.StringIO()
    for comment in header_comments:
        out.write(f"# {comment}\n")
    if trace.start is not None and trace.end is not None:
        out.write(f"# span: {trace.start.isoformat()} {trace.end.isoformat()}\n")
    with_tokens = any(request.tokens is not None for request in trace.requests)
    out.write("timestamp,duration,tokens\n" if with_tokens else "timestamp,duration\n")
    for request in trace.requests:
        duration = "" if request.duration_seconds is None else f"{request.duration_seconds:.1f}"
        tokens = "" if request.tokens is None else str(request.tokens)
        line = f"{_utc_text(request.arrival)},{duration}" + (f",{tokens}" if with_tokens else "")
        out.write(line + "\n")
    return out.getvalue()


# --- Generation -------------------------------------------------------------------------

# Sessions per hour per user in an office team, by local hour, for weekdays and weekends.
# Working hours with a lunch dip; a few people late in the evening; rare nights and weekends.
_OFFICE_WEEKDAY = (
    [0.002] * 7  # 00-07
    + [0.05, 0.3, 0.6, 0.6, 0.6]  # 07-12
    + [0.15]  # 12-13 lunch
    + [0.55, 0.55, 0.55, 0.5]  # 13-17
    + [0.3]  # 17-18
    + [0.04, 0.04]  # 18-20
    + [0.015, 0.015, 0.015]  # 20-23
    + [0.002]  # 23-24
)
_OFFICE_WEEKEND = [0.0] * 9 + [0.008] * 10 + [0.0] * 5


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sessions_per_hour: Callable[[datetime, int], float]
    """Session rate for the whole population at a local time (users as the second argument)."""
    bursts_per_hour: Callable[[datetime], float]
    burst_requests: tuple[int, int]
    burst_minutes: tuple[float, float]
    requests_per_session: float
    think_seconds: float
    median_tokens: float


def _office_sessions(local: datetime, users: int) -> float:
    table = _OFFICE_WEEKDAY if local.weekday() < 5 else _OFFICE_WEEKEND
    return table[local.hour] * users


def _office_bursts(local: datetime) -> float:
    # Someone runs a batch (an evaluation, a document import) about once or twice a week.
    return 0.03 if local.weekday() < 5 and 9 <= local.hour < 17 else 0.0


def _spiky_sessions(local: datetime, users: int) -> float:
    # A distributed team and a few tools: thin background traffic at any hour.
    return 0.025 * users


def _spiky_bursts(local: datetime) -> float:
    # Pipelines and batch jobs, a little busier in (UTC) daytime.
    return 0.2 if 6 <= local.hour < 20 else 0.08


PROFILES: dict[str, Profile] = {
    "office": Profile(
        name="office",
        description=(
            "an office team: working hours with a lunch dip, a few evening users, "
            "rare weekends, occasional batches"
        ),
        sessions_per_hour=_office_sessions,
        bursts_per_hour=_office_bursts,
        burst_requests=(10, 25),
        burst_minutes=(1.0, 3.0),
        requests_per_session=3.0,
        think_seconds=45.0,
        median_tokens=200.0,
    ),
    "spiky": Profile(
        name="spiky",
        description="sporadic users around the clock plus bursts from pipelines and batch jobs",
        sessions_per_hour=_spiky_sessions,
        bursts_per_hour=_spiky_bursts,
        burst_requests=(5, 40),
        burst_minutes=(1.0, 5.0),
        requests_per_session=2.0,
        think_seconds=30.0,
        median_tokens=250.0,
    ),
}


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of one minute."""
    if mean <= 0:
        return 0
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _duration(rng: random.Random, profile: Profile, tokens_per_second: float) -> float:
    tokens = profile.median_tokens * math.exp(rng.gauss(0.0, 0.6))
    return round(0.3 + tokens / tokens_per_second, 1)


def generate_trace(
    profile_name: str,
    start: datetime,
    days: float,
    timezone: str = "UTC",
    users: int = 12,
    seed: int = 1,
    tokens_per_second: float = 20.0,
) -> Trace:
    """A seeded synthetic trace: the same arguments always give the same requests."""
    if profile_name not in PROFILES:
        raise TraceError(f"unknown profile {profile_name!r} (known: {', '.join(PROFILES)})")
    if days <= 0 or users < 0:
        raise TraceError("days must be > 0 and users >= 0")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise TraceError(f"unknown time zone {timezone!r}") from error
    if start.tzinfo is None:
        raise TraceError("the start of a generated trace needs a time zone")
    profile = PROFILES[profile_name]
    rng = random.Random(seed)
    end = start + timedelta(days=days)
    arrivals: list[tuple[datetime, float]] = []
    minute = start
    while minute < end:
        local = minute.astimezone(zone)
        for _ in range(_poisson(rng, profile.sessions_per_hour(local, users) / 60.0)):
            moment = minute + timedelta(seconds=rng.uniform(0, 60))
            count = 1 + _poisson(rng, profile.requests_per_session - 1.0)
            for _ in range(count):
                duration = _duration(rng, profile, tokens_per_second)
                arrivals.append((moment, duration))
                moment += timedelta(seconds=duration + rng.expovariate(1.0 / profile.think_seconds))
        for _ in range(_poisson(rng, profile.bursts_per_hour(local) / 60.0)):
            moment = minute + timedelta(seconds=rng.uniform(0, 60))
            count = rng.randint(*profile.burst_requests)
            spread = rng.uniform(*profile.burst_minutes) * 60.0
            for offset in sorted(rng.uniform(0, spread) for _ in range(count)):
                arrivals.append(
                    (moment + timedelta(seconds=offset), _duration(rng, profile, tokens_per_second))
                )
        minute += timedelta(minutes=1)
    arrivals = sorted(a for a in arrivals if a[0] < end)
    requests = tuple(
        TraceRequest(
            arrival.astimezone(UTC).replace(microsecond=arrival.microsecond // 1000 * 1000),
            duration,
        )
        for arrival, duration in arrivals
    )
    return Trace(
        requests, start.astimezone(zone), end.astimezone(zone), f"generated:{profile_name}"
    )
