"""`siesta simulate`: replay a request trace through the real decide per policy; compare cost."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from siesta.api.durations import format_duration, parse_duration
from siesta.api.loader import describe_validation_error, load_one
from siesta.api.models import AUTO, ModelDeploymentSpec, ScheduleWindow
from siesta.commands.timeparse import in_zone, parse_instant
from siesta.errors import UsageError
from siesta.policy import CompiledSchedule, ScheduleError
from siesta.sim.bridge import BridgeError
from siesta.sim.compare import Comparison, compare
from siesta.sim.fine_tunes import compare_fine_tunes, fine_tunes_json, format_fine_tunes
from siesta.sim.policies import ALL_POLICY_NAMES, BRIDGE_POLICY, POLICY_NAMES
from siesta.sim.report import format_table, to_json
from siesta.sim.traces import TraceError, load_trace
from siesta.sim.world import WorldError, load_world


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay a request trace through the scaling policy and compare GPU cost and waits",
        description=(
            "Replays TRACE through siesta's own decide() in simulated time, under the spec as "
            "written and comparison policies, in a stated world model (docs/cost-model.md)."
        ),
    )
    parser.add_argument("-f", "--filename", required=True, type=Path, help="ModelDeployment YAML")
    parser.add_argument("--name", help="which ModelDeployment, if the file has several")
    parser.add_argument(
        "--trace", type=Path, help="request trace CSV (timestamp[,duration,tokens])"
    )
    parser.add_argument(
        "--fine-tune-trace",
        action="append",
        type=Path,
        metavar="TRACE",
        help=(
            "instead of --trace: one trace per fine-tune (repeat, at least two); compares N "
            "ModelDeployments with one base + N LoRA adapters (spec.adapters)"
        ),
    )
    parser.add_argument(
        "--policy",
        action="append",
        choices=ALL_POLICY_NAMES,
        help="policy to run (repeatable); default: all of " + ", ".join(POLICY_NAMES),
    )
    parser.add_argument(
        "--bridge",
        action="store_true",
        help=f"also run {BRIDGE_POLICY}: the spec with a CPU bridge (options below; the "
        "default when the spec has spec.bridge)",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="write a PNG of replicas and waits"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the world's random parts (node jitter)"
    )
    parser.add_argument(
        "--start", help="start of the simulated period (ISO 8601); default: the trace's span"
    )
    parser.add_argument(
        "--end", help="end of the simulated period (ISO 8601); default: the trace's span"
    )
    parser.add_argument(
        "--idle-timeout",
        help="N (or auto) for the idle-only policy (default: the spec's idleTimeout)",
    )
    parser.add_argument(
        "--spec-idle-timeout",
        metavar="N|auto",
        help="replace the spec's scaling.idleTimeout (e.g. auto) before every policy runs",
    )
    world = parser.add_argument_group("world model (each overrides --world)")
    world.add_argument("--world", type=Path, metavar="FILE", help="YAML file of world settings")
    world.add_argument("--instance-type", help="GPU instance type (default from spec.gpu.products)")
    world.add_argument("--price", type=float, help="USD per instance-hour")
    world.add_argument("--node-provision", help="node request -> GPU ready, e.g. 3m (default 180s)")
    world.add_argument("--node-jitter", help="extra node time, uniform in [0, this] (default 0)")
    world.add_argument("--model-load", help="pod on a ready node -> model ready (default 60s)")
    world.add_argument("--node-unneeded", help="empty node removed after (default 10m)")
    world.add_argument(
        "--autoscaler",
        choices=["cluster-autoscaler", "karpenter"],
        help="who removes empty nodes (default cluster-autoscaler)",
    )
    world.add_argument(
        "--consolidate-after", help="Karpenter's consolidateAfter (default 1m, with karpenter)"
    )
    world.add_argument(
        "--concurrency",
        type=int,
        help="requests per replica at once (default spec.server.parallel)",
    )
    world.add_argument(
        "--request-seconds", help="service time of lines without duration or tokens (default 5s)"
    )
    bridge = parser.add_argument_group(
        "the CPU bridge (siesta+bridge; each overrides the --world file's bridge: keys)"
    )
    bridge.add_argument("--bridge-instance-type", help="CPU node type (default m7i.2xlarge)")
    bridge.add_argument("--bridge-price", type=float, help="USD per CPU node-hour")
    bridge.add_argument(
        "--bridge-node-provision", help="CPU node request -> node ready (default 45s)"
    )
    bridge.add_argument(
        "--bridge-model-load", help="bridge pod on a ready node -> ready (default 30s)"
    )
    bridge.add_argument(
        "--bridge-first-token", help="bridge takes a request -> first token (default 3s)"
    )
    bridge.add_argument(
        "--bridge-gpu-after",
        help="wake the GPU only if demand lasts this long (default: spec.bridge.gpuAfter, "
        "else with the bridge)",
    )
    bridge.add_argument(
        "--bridge-window",
        action="append",
        metavar="'CRON for DURATION'",
        help="keep the bridge up in this window, e.g. '0 22 * * * for 9h' (repeatable; "
        "schedule's timezone)",
    )
    parser.set_defaults(handler=run)


def _duration_seconds(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text).total_seconds()
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from error


def _with_idle_timeout(spec: ModelDeploymentSpec, value: str | None) -> ModelDeploymentSpec:
    """The spec with --spec-idle-timeout applied (validated like the field itself)."""
    if value is None:
        return spec
    if value != AUTO:
        seconds = _duration_seconds(value, "--spec-idle-timeout")
        if not seconds:
            raise UsageError("--spec-idle-timeout must be auto or a positive duration")
        value = format_duration(parse_duration(f"{seconds}s"))
    scaling = spec.scaling.model_dump(by_alias=True, exclude_none=True)
    scaling["idleTimeout"] = value
    if value != AUTO:
        scaling.pop("autoIdleTimeout", None)
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["scaling"] = scaling
    try:
        return ModelDeploymentSpec.model_validate(data)
    except ValidationError as error:
        raise UsageError(f"--spec-idle-timeout: {describe_validation_error(error)}") from None


def _bridge_windows(texts: list[str] | None) -> list[ScheduleWindow] | None:
    """--bridge-window 'CRON for DURATION' -> schedule windows named bridge-1, bridge-2..."""
    if not texts:
        return None
    windows = []
    for number, text in enumerate(texts, start=1):
        cron, separator, duration = text.rpartition(" for ")
        if not separator:
            raise UsageError(f"--bridge-window {text!r}: expected 'CRON for DURATION'")
        try:
            windows.append(
                ScheduleWindow(name=f"bridge-{number}", start=cron.strip(), duration=duration)
            )
        except (ValidationError, ValueError) as error:
            message = (
                describe_validation_error(error) if isinstance(error, ValidationError) else error
            )
            raise UsageError(f"--bridge-window {text!r}: {message}") from None
    return windows


def _bridge_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "instance_type": args.bridge_instance_type,
        "price_per_hour": args.bridge_price,
        "node_provision_seconds": _duration_seconds(
            args.bridge_node_provision, "--bridge-node-provision"
        ),
        "model_load_seconds": _duration_seconds(args.bridge_model_load, "--bridge-model-load"),
        "first_token_seconds": _duration_seconds(args.bridge_first_token, "--bridge-first-token"),
        "gpu_after": _duration_seconds(args.bridge_gpu_after, "--bridge-gpu-after"),
        "windows": _bridge_windows(args.bridge_window),
    }


def _policy_names(args: argparse.Namespace, spec: ModelDeploymentSpec) -> list[str] | None:
    """--policy as given; --bridge (or, with no --policy, a spec with spec.bridge) adds
    siesta+bridge next to them."""
    names = list(dict.fromkeys(args.policy)) if args.policy else None
    if args.bridge or (names is None and spec.bridge is not None):
        names = names or list(POLICY_NAMES)
        if BRIDGE_POLICY not in names:
            names.append(BRIDGE_POLICY)
    return names


def run(args: argparse.Namespace) -> int:
    md = load_one(args.filename, args.name)
    if (args.trace is None) == (args.fine_tune_trace is None):
        raise UsageError("give either --trace or --fine-tune-trace (repeated)")
    overrides: dict[str, object] = {
        "instance_type": args.instance_type,
        "price_per_hour": args.price,
        "node_provision_seconds": _duration_seconds(args.node_provision, "--node-provision"),
        "node_provision_jitter_seconds": _duration_seconds(args.node_jitter, "--node-jitter"),
        "model_load_seconds": _duration_seconds(args.model_load, "--model-load"),
        "node_unneeded_seconds": _duration_seconds(args.node_unneeded, "--node-unneeded"),
        "autoscaler": args.autoscaler,
        "consolidate_after_seconds": _duration_seconds(
            args.consolidate_after, "--consolidate-after"
        ),
        "concurrency": args.concurrency,
        "default_request_seconds": _duration_seconds(args.request_seconds, "--request-seconds"),
        "bridge": _bridge_overrides(args),
    }
    md = md.model_copy(update={"spec": _with_idle_timeout(md.spec, args.spec_idle_timeout)})
    idle_timeout = None
    if args.idle_timeout == AUTO:
        idle_timeout = AUTO
    elif args.idle_timeout is not None:
        seconds = _duration_seconds(args.idle_timeout, "--idle-timeout")
        if not seconds:
            raise UsageError("--idle-timeout must be a positive duration such as 15m")
        idle_timeout = format_duration(parse_duration(f"{seconds}s"))
    start = parse_instant(args.start, "--start") if args.start else None
    end = parse_instant(args.end, "--end") if args.end else None
    if start and end and end <= start:
        raise UsageError("--end must be after --start")
    if args.fine_tune_trace is not None:
        return _run_fine_tunes(md.name, md.spec, args, overrides, start, end)
    try:
        world = load_world(args.world, overrides)
        trace = load_trace(args.trace)
        comparison = compare(
            md.spec,
            trace,
            world,
            _policy_names(args, md.spec),
            start=start,
            end=end,
            idle_timeout=idle_timeout,
            seed=args.seed,
        )
    except (TraceError, WorldError, BridgeError) as error:
        raise UsageError(str(error)) from error
    if args.plot is not None:
        from siesta.sim.plot import PlotUnavailable, write_plot

        try:
            write_plot(comparison, args.plot, f"{md.name}: {args.trace.name}")
        except PlotUnavailable as error:
            raise UsageError(str(error)) from error
    if args.output == "json":
        print(json.dumps(to_json(comparison.reports, _meta(md.name, args, comparison)), indent=2))
    else:
        print(_heading(md.name, args, comparison))
        print()
        print(format_table(comparison.reports))
    if args.plot is not None and args.output != "json":
        print(f"\nplot: {args.plot}")
    return 0


def _run_fine_tunes(
    name: str,
    spec: ModelDeploymentSpec,
    args: argparse.Namespace,
    overrides: dict[str, object],
    start: datetime | None,
    end: datetime | None,
) -> int:
    if len(args.fine_tune_trace) < 2:
        raise UsageError("--fine-tune-trace: give one trace per fine-tune, at least two")
    if args.plot is not None or args.policy:
        raise UsageError("--plot and --policy do not apply to --fine-tune-trace")
    try:
        world = load_world(args.world, overrides)
        traces = [load_trace(path) for path in args.fine_tune_trace]
        comparison = compare_fine_tunes(spec, traces, world, start=start, end=end, seed=args.seed)
    except (TraceError, WorldError) as error:
        raise UsageError(str(error)) from error
    zone = spec.schedule.timezone
    if args.output == "json":
        meta = {
            "modelDeployment": name,
            "traces": [str(path) for path in args.fine_tune_trace],
            "start": in_zone(comparison.start, zone),
            "end": in_zone(comparison.end, zone),
            "seed": args.seed,
            "world": comparison.world.model_dump(by_alias=True),
        }
        print(json.dumps(fine_tunes_json(comparison, meta), indent=2))
        return 0
    world_line = comparison.world
    print(
        f"{name}: {len(traces)} fine-tunes, {comparison.separate.requests} requests, "
        f"{in_zone(comparison.start, zone)} .. {in_zone(comparison.end, zone)}; "
        f"{world_line.instance_type} at ${world_line.price_per_hour:.3f}/h, "
        f"{world_line.concurrency} requests per replica, policy: the spec as written"
    )
    print()
    print(format_fine_tunes(comparison))
    return 0


def _meta(name: str, args: argparse.Namespace, comparison: Comparison) -> dict[str, Any]:
    zone = comparison.spec.schedule.timezone
    return {
        "modelDeployment": name,
        "trace": str(args.trace),
        "start": in_zone(comparison.start, zone),
        "end": in_zone(comparison.end, zone),
        "hours": (comparison.end - comparison.start).total_seconds() / 3600.0,
        "seed": args.seed,
        "world": comparison.world.model_dump(by_alias=True),
        **(
            {"bridge": comparison.bridge.model_dump(by_alias=True, exclude_none=True)}
            if comparison.bridge
            else {}
        ),
        "closedDays": [
            {"date": in_zone(day, zone)[:10], "holiday": reason}
            for day, reason in _closed_days(comparison)
        ],
    }


def _closed_days(comparison: Comparison) -> list[tuple[datetime, str]]:
    spec = comparison.spec
    try:
        schedule = CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max)
    except ScheduleError:
        return []
    return schedule.closed_days_between(comparison.start, comparison.end)


def _heading(name: str, args: argparse.Namespace, comparison: Comparison) -> str:
    zone = comparison.spec.schedule.timezone
    world = comparison.world
    hours = (comparison.end - comparison.start).total_seconds() / 3600.0
    requests = comparison.reports[0].requests if comparison.reports else 0
    windows = ", ".join(w.name for w in comparison.spec.schedule.windows) or "none"
    closed = [
        f"{in_zone(day, zone)[:10]} holiday: {reason}" for day, reason in _closed_days(comparison)
    ]
    return "\n".join(
        [
            f"{name} on {args.trace}: {requests} requests, "
            f"{in_zone(comparison.start, zone)} .. {in_zone(comparison.end, zone)} ({hours:.1f} h)",
            f"world: {world.instance_type} at ${world.price_per_hour:.3f}/h; node ready "
            f"{world.node_provision_seconds:g}s after request, "
            f"model load {world.model_load_seconds:g}s, "
            f"empty node removed after {world.node_unneeded_seconds:g}s ({world.autoscaler}); "
            f"{world.concurrency} requests per replica; "
            f"wakeTimeout {world.wake_timeout_seconds:g}s",
            f"waits: seconds until a replica starts serving (timeouts count at wakeTimeout); "
            f"'in window': arrivals inside the spec's windows ({windows}), prewarm excluded",
            *([f"closed days (no window opens): {'; '.join(closed)}"] if closed else []),
            *_bridge_heading(comparison),
        ]
    )


def _bridge_heading(comparison: Comparison) -> list[str]:
    bridge = comparison.bridge
    if bridge is None:
        return []
    gpu_after = (
        "the GPU wakes with the bridge"
        if bridge.gpu_after_seconds is None
        else f"the GPU wakes only if demand lasts {bridge.gpu_after_seconds:g}s"
    )
    windows = ", ".join(
        f"'{w.start}' for {w.duration}" if w.duration else f"'{w.start}' to '{w.end}'"
        for w in bridge.windows
    )
    return [
        f"bridge: {bridge.instance_type} at ${bridge.price_per_hour:.4f}/h; node ready "
        f"{bridge.node_provision_seconds:g}s after request, model load "
        f"{bridge.model_load_seconds:g}s; {bridge.concurrency} requests at once at "
        f"{bridge.tokens_per_second:g} tokens/s, first token {bridge.first_token_seconds:g}s "
        f"(GPU {comparison.world.first_token_seconds:g}s); {gpu_after}"
        + (f"; kept up in {windows}" if windows else ""),
        "first token at zero: arrival -> first token of the requests that found no GPU "
        "replica ready; $ vs always-on: GPU and CPU dollars against always-on's",
    ]
