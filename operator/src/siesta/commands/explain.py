"""`siesta explain`: the decision for one moment, with its reasons."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from siesta.api.durations import parse_duration
from siesta.api.loader import load_one
from siesta.api.models import ModelDeployment
from siesta.commands.learned import add_requests_argument, learned
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.operator import bridge_render, render
from siesta.operator.demand import LeaseView
from siesta.operator.load import LoadReading
from siesta.operator.observe import PodView, child_view
from siesta.operator.plan import Model, Remembered, Views, effective_spec, plan
from siesta.operator.settings import OperatorSettings, SettingsError
from siesta.policy import Memory, Observed, Signals, decide, forecast
from siesta.policy.bridge import bridge_decision, gate_gpu


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain", help="show how many replicas a model gets at a moment, and why"
    )
    parser.add_argument("-f", "--filename", required=True, type=Path, help="ModelDeployment YAML")
    parser.add_argument("--name", help="which ModelDeployment, if the file has several")
    parser.add_argument("--at", required=True, help="ISO 8601 time with offset")
    parser.add_argument("--metric", default="0", help="load query value, or 'unavailable'")
    parser.add_argument(
        "--metric-source",
        choices=["prometheus", "servers", "gateway"],
        default="prometheus",
        help="who measured --metric: Prometheus, or a fallback while it is down (the "
        "servers' own /metrics, the gateways' in-flight counts)",
    )
    parser.add_argument("--pending", type=int, default=0, help="requests held at the gateway")
    parser.add_argument("--last-active", help="last request or load, ISO 8601")
    parser.add_argument("--replicas", type=int, default=0, help="current replicas")
    parser.add_argument(
        "--starting", type=int, default=0, help="replicas still starting or loading"
    )
    parser.add_argument(
        "--starting-since", help="when the oldest starting replica was created, ISO 8601"
    )
    parser.add_argument(
        "--failing",
        type=int,
        default=0,
        help="replicas that crash or cannot start (they never hold a scale-down)",
    )
    parser.add_argument(
        "--default-idle-timeout",
        help="the operator's default idleTimeout (else SIESTA_DEFAULT_IDLE_TIMEOUT, else 15m)",
    )
    parser.add_argument(
        "--writes",
        action="store_true",
        help="also list what the operator would write (its plan), with the owned objects "
        "in place and --replicas running",
    )
    add_requests_argument(parser)
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run)


def _reading(load: float | None, source: str) -> LoadReading:
    if load is None:
        return LoadReading(None, "given as unavailable")
    if source == "prometheus":
        return LoadReading(load)
    return LoadReading(load, "Prometheus given as unavailable", source)


def _load_value(text: str) -> float | None:
    if text == "unavailable":
        return None
    try:
        return float(text)
    except ValueError as error:
        raise UsageError(f"--metric: {text!r} is neither a number nor 'unavailable'") from error


def operator_settings(default_idle_timeout: str | None) -> OperatorSettings:
    """The settings the operator would run with (its environment), for defaults such as
    the idle timeout of a spec that sets none."""
    try:
        settings = OperatorSettings.from_env()
    except SettingsError as error:
        raise UsageError(str(error)) from error
    if default_idle_timeout is None:
        return settings
    try:
        parse_duration(default_idle_timeout)
    except ValueError as error:
        raise UsageError(f"--default-idle-timeout: {error}") from None
    return replace(settings, default_idle_timeout=default_idle_timeout)


def _plan_writes(
    md: ModelDeployment,
    settings: OperatorSettings,
    observed: Observed,
    reading: LoadReading,
    pending: int,
    last_active: datetime | None,
    now: datetime,
) -> list[str]:
    """The operator's plan for this moment: children in place, `observed` pods running."""
    owner = render.Owner(name=md.name, namespace=md.namespace, uid="")
    model = Model(owner, None, effective_spec(md.spec, settings))
    children = []
    for manifest in render.children(owner, md.spec, settings):
        manifest["spec"]["replicas"] = observed.replicas
        children.append(child_view(manifest))

    def pod(ordinal: int) -> PodView:
        ready = ordinal < observed.ready
        failing = ordinal >= observed.ready + observed.starting
        return PodView(
            name=f"{md.name}-{ordinal}",
            uid=str(ordinal),
            ordinal=ordinal,
            created=now if ready or failing else (observed.starting_since or now),
            phase="Running",
            ready=ready,
            ready_since=now if ready else None,
            scheduled_at=now,
            unschedulable=False,
            unschedulable_message="",
            failing="Failing" if failing else None,
            terminating=False,
            last_words=observed.failure if failing else "",
        )

    pods = [pod(ordinal) for ordinal in range(observed.replicas)]
    leases = [LeaseView("explain", now, 30, pending, 0)] if pending else []
    remembered = Remembered(memory=Memory(desired=observed.replicas, last_active_time=last_active))
    bridged = [child_view(m) for m in bridge_render.children(owner, md.spec, settings)]
    views = Views.build(pods, leases, children, bridge_children=bridged)
    planned = plan(model, views, remembered, reading, settings, now)
    return planned.writes()


def run(args: argparse.Namespace) -> int:
    md = load_one(args.filename, args.name)
    now = parse_instant(args.at, "--at")
    last_active = parse_instant(args.last_active, "--last-active") if args.last_active else None
    starting_since = (
        parse_instant(args.starting_since, "--starting-since") if args.starting_since else None
    )
    if min(args.pending, args.replicas, args.starting, args.failing) < 0:
        raise UsageError("--pending, --replicas, --starting and --failing must be >= 0")
    if args.starting + args.failing > args.replicas:
        raise UsageError("--starting plus --failing cannot exceed --replicas")
    settings = operator_settings(args.default_idle_timeout)
    spec = effective_spec(md.spec, settings)
    load = _load_value(args.metric)
    reading = _reading(load, args.metric_source)
    signals = Signals(
        load=reading.value,
        load_error=reading.error,
        load_source=reading.source,
        pending_requests=args.pending,
    )
    observed = Observed(
        replicas=args.replicas,
        ready=args.replicas - args.starting - args.failing,
        starting=args.starting,
        starting_since=starting_since,
        failing=args.failing,
        failure_reason="Failing" if args.failing else "",
        failure="crashing or cannot start (--failing)" if args.failing else "",
    )
    memory = Memory(last_active_time=last_active)
    if spec.scaling.idle_timeout_auto:
        seen = learned(md, args.requests, now)
        memory = replace(
            memory,
            last_active_time=last_active or seen.last_request,
            last_request_time=seen.last_request,
            request_gaps=seen.gaps,
        )
    decision = decide(spec, observed, signals, now, memory)
    # A CPU bridge (docs/bridge.md), taken as asleep: what it would do, and its word on the GPU.
    bridge = bridge_decision(spec, observed, Observed(), signals, now) if spec.bridge else None
    if bridge is not None:
        decision = gate_gpu(decision, bridge, observed)
    zone = md.spec.schedule.timezone
    next_change = in_zone(decision.next_change, zone) if decision.next_change else None
    writes = (
        _plan_writes(md, settings, observed, reading, args.pending, last_active, now)
        if args.writes
        else None
    )
    if args.output == "json":
        payload: dict[str, Any] = {
            "desiredReplicas": decision.desired,
            "reasons": decision.reasons,
            "nextChange": next_change,
        }
        if bridge is not None:
            payload["bridge"] = {
                "replicas": bridge.desired,
                "state": bridge.state.value,
                "reason": bridge.reason,
            }
        if writes is not None:
            payload["writes"] = writes
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{md.name} at {in_zone(now, zone)}: {decision.desired} replica(s)")
    server = md.spec.server
    print(
        f"  context per conversation: {server.context_size // server.parallel} tokens "
        f"(contextSize {server.context_size} over parallel {server.parallel} slots)"
    )
    for reason in decision.reasons:
        print(f"  - {reason}")
    if bridge is not None:
        print(f"  bridge: {bridge.desired} replica(s), {bridge.state.value}: {bridge.reason}")
    for condition in decision.conditions:
        if not condition.status:
            print(f"  ! {condition.type}=False: {condition.message}")
    transition = forecast(spec, decision, signals)
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
