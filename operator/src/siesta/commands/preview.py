"""`siesta preview`: the schedule floor over a time range, one line per change."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from siesta.api.loader import load_one
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.policy import CompiledSchedule, ScheduleError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "preview", help="show the schedule's replica floor over a time range"
    )
    parser.add_argument("-f", "--filename", required=True, type=Path, help="ModelDeployment YAML")
    parser.add_argument("--name", help="which ModelDeployment, if the file has several")
    parser.add_argument("--from", dest="start", required=True, help="ISO 8601 time with offset")
    parser.add_argument("--to", dest="end", required=True, help="ISO 8601 time with offset")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    md = load_one(args.filename, args.name)
    start, end = parse_instant(args.start, "--from"), parse_instant(args.end, "--to")
    if end < start:
        raise UsageError("--to must not be before --from")
    spec = md.spec
    try:
        schedule = CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max)
    except ScheduleError as error:
        raise UsageError(f"{args.filename}: spec.schedule: {error}") from error
    zone = spec.schedule.timezone
    entries = [
        {
            "time": in_zone(change.time, zone),
            "minReplicas": change.floor.replicas,
            "window": change.floor.window,
        }
        for change in schedule.changes_between(start, end)
    ]
    if args.output == "json":
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        window = f"window {entry['window']}" if entry["window"] else "no window"
        print(f"{entry['time']}  min {entry['minReplicas']}  ({window})")
    return 0
