"""`siesta trace generate|check`: make seeded synthetic request traces, or check one."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from siesta.errors import UsageError
from siesta.sim.report import percentile
from siesta.sim.traces import PROFILES, TraceError, format_trace, generate_trace, load_trace


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trace", help="generate or check request traces for `siesta simulate`"
    )
    actions = parser.add_subparsers(dest="trace_command", required=True, metavar="ACTION")

    generate = actions.add_parser(
        "generate",
        help="write a seeded synthetic trace (CSV)",
        description="Profiles: "
        + "; ".join(f"{name}: {profile.description}" for name, profile in PROFILES.items()),
    )
    generate.add_argument("--profile", choices=sorted(PROFILES), default="office")
    generate.add_argument(
        "--start",
        required=True,
        help="first day (YYYY-MM-DD, local midnight in --timezone) or ISO 8601 time",
    )
    generate.add_argument("--days", type=float, default=7.0, help="length in days (default 7)")
    generate.add_argument(
        "--timezone", default="UTC", help="IANA time zone of the users (default UTC)"
    )
    generate.add_argument(
        "--users", type=int, default=12, help="people behind the traffic (default 12)"
    )
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    generate.set_defaults(handler=run_generate)

    check = actions.add_parser("check", help="validate a trace and print a summary")
    check.add_argument("trace", type=Path)
    check.set_defaults(handler=run_check)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise UsageError(f"--timezone: unknown time zone {name!r}") from error


def _start(text: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"--start: {text!r} is neither YYYY-MM-DD nor an ISO 8601 time") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def run_generate(args: argparse.Namespace) -> int:
    zone = _zone(args.timezone)
    start = _start(args.start, zone)
    try:
        trace = generate_trace(args.profile, start, args.days, args.timezone, args.users, args.seed)
    except TraceError as error:
        raise UsageError(str(error)) from error
    comments = [
        f"siesta trace generate --profile {args.profile} --start {args.start} --days {args.days:g} "
        f"--timezone {args.timezone} --users {args.users} --seed {args.seed}",
        f"{len(trace.requests)} requests; duration = service time in seconds",
    ]
    text = format_trace(trace, comments)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"{args.output}: {len(trace.requests)} requests")
    return 0


def run_check(args: argparse.Namespace) -> int:
    try:
        trace = load_trace(args.trace)
    except TraceError as error:
        raise UsageError(str(error)) from error
    requests = trace.requests
    durations = [r.duration_seconds for r in requests if r.duration_seconds is not None]
    print(f"{args.trace}: {len(requests)} requests, sorted, timestamps valid")
    print(f"  first {requests[0].arrival.isoformat()}  last {requests[-1].arrival.isoformat()}")
    if trace.start is not None and trace.end is not None:
        print(f"  span  {trace.start.isoformat()} .. {trace.end.isoformat()}")
    if durations:
        median = percentile(durations, 0.5) or 0.0
        print(f"  duration given on {len(durations)} lines, median {median:.1f}s")
    per_day = Counter(r.arrival.date().isoformat() for r in requests)
    for day, count in sorted(per_day.items()):
        print(f"  {day} (UTC): {count}")
    return 0
