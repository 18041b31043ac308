"""`siesta preview`: the schedule floor (and a CPU bridge's windows) over a time range, one line
per change."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from siesta.api.durations import format_duration
from siesta.api.loader import load_one
from siesta.commands.learned import (
    add_requests_argument,
    hourly_timeouts,
    learned,
    prewarm_changes,
)
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.policy import CompiledSchedule, ScheduleError
from siesta.policy.bridge import bridge_windows


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "preview", help="show the schedule's replica floor over a time range"
    )
    parser.add_argument("-f", "--filename", required=True, type=Path, help="ModelDeployment YAML")
    parser.add_argument("--name", help="which ModelDeployment, if the file has several")
    parser.add_argument("--from", dest="start", required=True, help="ISO 8601 time with offset")
    parser.add_argument("--to", dest="end", required=True, help="ISO 8601 time with offset")
    add_requests_argument(parser)
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
    moments: list[tuple[datetime, int, str | None, str | None]] = [
        (change.time, change.floor.replicas, change.floor.window, None)
        for change in schedule.changes_between(start, end)
    ]
    for midnight, holiday in schedule.closed_days_between(start, end):
        floor = schedule.floor_at(midnight)
        moments.append((midnight, floor.replicas, floor.window, holiday))
    moments.sort(key=lambda moment: (moment[0], moment[3] is not None))
    entries = [
        {"time": in_zone(time, zone), "minReplicas": replicas, "window": window}
        | ({"holiday": holiday} if holiday else {})
        for time, replicas, window, holiday in moments
    ]
    idle: list[dict[str, Any]] = []
    if spec.scaling.idle_timeout_auto:
        seen = learned(md, args.requests, end)
        idle = [
            {
                "time": in_zone(entry.start, zone),
                "idleTimeout": format_duration(entry.timeout),
                "reason": entry.reason,
            }
            for entry in hourly_timeouts(md, seen, start, end)
        ]
    prewarm: list[dict[str, Any]] = []
    if spec.schedule.learned_prewarm is not None and spec.schedule.learned_prewarm.enabled:
        seen = learned(md, args.requests, end)
        prewarm = [
            {"time": in_zone(time, zone), "learnedPrewarm": on, "reason": reason or "over"}
            for time, on, reason in prewarm_changes(md, seen, start, end)
        ]
    bridge = bridge_changes(args.filename, spec, start, end)
    if args.output == "json":
        print(json.dumps(entries + idle + prewarm + bridge, indent=2))
        return 0
    for entry in entries:
        window = f"window {entry['window']}" if entry["window"] else "no window"
        if "holiday" in entry:
            still = (
                f"; window {entry['window']} open since the day before" if entry["window"] else ""
            )
            window = f"holiday: {entry['holiday']}, no window opens{still}"
        print(f"{entry['time']}  min {entry['minReplicas']}  ({window})")
    if idle:
        print(f"idleTimeout auto, after a request (learned from {seen.source}):")
    for entry in idle:
        print(f"{entry['time']}  idle timeout {entry['idleTimeout']}  ({entry['reason']})")
    if spec.schedule.learned_prewarm is not None and spec.schedule.learned_prewarm.enabled:
        print(f"learned prewarm (from {seen.source}):" if prewarm else "learned prewarm: none")
    for entry in prewarm:
        state = "on " if entry["learnedPrewarm"] else "off"
        print(f"{entry['time']}  learned prewarm {state} ({entry['reason']})")
    if bridge:
        print("CPU bridge windows (the bridge kept at one replica):")
    for entry in bridge:
        window = f"window {entry['window']}" if entry["window"] else "no window"
        print(f"{entry['time']}  bridge {entry['bridgeReplicas']}  ({window})")
    return 0


def bridge_changes(
    filename: Path, spec: Any, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """When spec.bridge.windows open and close (the bridge's floor, docs/bridge.md)."""
    if spec.bridge is None or not spec.bridge.windows:
        return []
    zone = spec.schedule.timezone
    try:
        windows = bridge_windows(spec.bridge.windows, zone)
    except ScheduleError as error:
        raise UsageError(f"{filename}: spec.bridge.windows: {error}") from error
    return [
        {
            "time": in_zone(change.time, zone),
            "bridgeReplicas": change.floor.replicas,
            "window": change.floor.window,
        }
        for change in windows.changes_between(start, end)
    ]
