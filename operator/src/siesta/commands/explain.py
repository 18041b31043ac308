"""`siesta explain`: the decision for one moment, with its reasons."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from siesta.api.loader import load_one
from siesta.api.models import ModelDeployment
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.operator import render
from siesta.operator.demand import LeaseView
from siesta.operator.load import LoadReading
from siesta.operator.observe import PodView, child_view
from siesta.operator.plan import Model, Remembered, Views, effective_spec, plan
from siesta.operator.settings import OperatorSettings
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
    parser.add_argument(
        "--writes",
        action="store_true",
        help="also list what the operator would write (its plan), with the owned objects "
        "in place and --replicas running",
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


def _plan_writes(
    md: ModelDeployment,
    observed: Observed,
    load: float | None,
    pending: int,
    last_active: datetime | None,
    now: datetime,
) -> list[str]:
    """The operator's plan for this moment: children in place, `observed` pods running."""
    settings = OperatorSettings()
    owner = render.Owner(name=md.name, namespace=md.namespace, uid="")
    model = Model(owner, None, effective_spec(md.spec, settings))
    children = []
    for manifest in render.children(owner, md.spec, settings):
        manifest["spec"]["replicas"] = observed.replicas
        children.append(child_view(manifest))
    pods = [
        PodView(
            name=f"{md.name}-{ordinal}",
            uid=str(ordinal),
            ordinal=ordinal,
            created=now,
            phase="Running",
            ready=ordinal < observed.ready,
            ready_since=now if ordinal < observed.ready else None,
            scheduled_at=now,
            unschedulable=False,
            unschedulable_message="",
            failing=None,
            terminating=False,
        )
        for ordinal in range(observed.replicas)
    ]
    leases = [LeaseView("explain", now, 30, pending, 0)] if pending else []
    remembered = Remembered(memory=Memory(desired=observed.replicas, last_active_time=last_active))
    reading = LoadReading(load, "" if load is not None else "given as unavailable")
    planned = plan(model, Views.build(pods, leases, children), remembered, reading, settings, now)
    return planned.writes()


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
    writes = (
        _plan_writes(md, observed, load, args.pending, last_active, now) if args.writes else None
    )
    if args.output == "json":
        payload: dict[str, Any] = {
            "desiredReplicas": decision.desired,
            "reasons": decision.reasons,
            "nextChange": next_change,
        }
        if writes is not None:
            payload["writes"] = writes
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
    if writes is not None:
        print("the operator would write:" if writes else "the operator would write nothing")
        for line in writes:
            print(f"  > {line}")
    return 0
