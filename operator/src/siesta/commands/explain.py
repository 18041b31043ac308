"""`siesta explain`: the decision for one moment, with its reasons."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from siesta.api.loader import load_one
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.policy import Memory, Observed, Signals, decide, forecast


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain", help="show how many replicas a model gets at a moment, and why"
    )
    parser.add_argument("-f", "--filename", required=True, type=Path, help="ModelDeployment YAML")
    parser.add_argument("--name", help="which ModelDeployment, if the file has several")
    parser.add_argument("--at", required=True, help="ISO 8601 time with offset")
    parser.add_argument("--metric", default="0", help="load query value, or 'unavailable'")
    parser.add_argument("--pending", type=int, default=0, help="requests held at the gateway")
    parser.add_argument("--last-active", help="last request or load, ISO 8601")
    parser.add_argument("--replicas", type=int, default=0, help="current replicas")
    parser.add_argument(
        "--starting", type=int, default=0, help="replicas still starting or loading"
    )
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run)


def _load_value(text: str) -> float | None:
    if text == "unavailable":
        return None
    try:
        return float(text)
    except ValueError as error:
        raise UsageError(f"--metric: {text!r} is neither a number nor 'unavailable'") from error


def run(args: argparse.Namespace) -> int:
    md = load_one(args.filename, args.name)
    now = parse_instant(args.at, "--at")
    last_active = parse_instant(args.last_active, "--last-active") if args.last_active else None
    if min(args.pending, args.replicas, args.starting) < 0:
        raise UsageError("--pending, --replicas and --starting must be >= 0")
    load = _load_value(args.metric)
    signals = Signals(
        load=load,
        load_error="" if load is not None else "given as unavailable",
        pending_requests=args.pending,
    )
    observed = Observed(
        replicas=args.replicas, ready=max(args.replicas - args.starting, 0), starting=args.starting
    )
    decision = decide(md.spec, observed, signals, now, Memory(last_active_time=last_active))
    zone = md.spec.schedule.timezone
    next_change = in_zone(decision.next_change, zone) if decision.next_change else None
    if args.output == "json":
        payload = {
            "desiredReplicas": decision.desired,
            "reasons": decision.reasons,
            "nextChange": next_change,
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{md.name} at {in_zone(now, zone)}: {decision.desired} replica(s)")
    for reason in decision.reasons:
        print(f"  - {reason}")
    for condition in decision.conditions:
        if not condition.status:
            print(f"  ! {condition.type}=False: {condition.message}")
    transition = forecast(md.spec, decision, signals)
    if transition is not None:
        print(
            f"next: {transition.replicas} replica(s) at {in_zone(transition.time, zone)} ({transition.reason})"
        )
    elif next_change:
        print(f"re-evaluated at {next_change}")
    return 0
