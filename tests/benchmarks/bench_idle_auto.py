"""Benchmark: `idleTimeout: auto` against the spec's fixed idle timeout, in the simulator.

Each pair (example spec, trace) is replayed by `siesta simulate`'s own engine with the spec as
written and with `idleTimeout: auto` (default bounds), in both autoscaler worlds
(cluster-autoscaler and Karpenter). It prints node-hours as a share of always-on, the share
the schedule's windows alone hold (its floor: the least any policy that keeps them can
use), cold starts inside a window, and the p95 wait. Held-out traces are generated with
seeds and shapes the examples do not use. A script, not a test (about a minute):

    .venv/bin/python tests/benchmarks/bench_idle_auto.py [--trace SPEC.yaml=TRACE.csv ...]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from siesta.api.loader import load_one
from siesta.api.models import ModelDeploymentSpec
from siesta.policy import CompiledSchedule
from siesta.sim.compare import compare
from siesta.sim.engine import default_span
from siesta.sim.traces import Trace, generate_trace, load_trace
from siesta.sim.world import AUTOSCALERS, World

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
PAIRS = [
    ("t4-office-hours.yaml", "office-week-berlin.csv"),
    ("t4-office-hours.yaml", "office-week-berlin-seed2.csv"),
    ("t4-office-hours.yaml", "office-week-berlin-seed3.csv"),
    ("eks-s3-berlin.yaml", "christmas-week-berlin.csv"),
    ("a10g-on-demand.yaml", "spiky-week.csv"),
]
# (spec, profile, start, days, timezone, users, seed): shapes and seeds no example uses.
HELD_OUT = [
    ("t4-office-hours.yaml", "office", "2027-01-11", 14, "Europe/Berlin", 12, 11),
    ("a10g-on-demand.yaml", "spiky", "2027-01-11", 14, "America/New_York", 8, 12),
]


def with_idle_timeout(spec: ModelDeploymentSpec, value: str) -> ModelDeploymentSpec:
    scaling = spec.scaling.model_copy(update={"idle_timeout": value, "auto_idle_timeout": None})
    return spec.model_copy(update={"scaling": scaling})


def floor_hours(spec: ModelDeploymentSpec, trace: Trace) -> float:
    """Hours the schedule's floor alone keeps a replica (prewarm included)."""
    schedule = CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max)
    start, end = default_span(trace, spec.schedule.timezone)
    total, moment, step = 0.0, start, timedelta(minutes=1)
    while moment < end:
        total += schedule.floor_at(moment).replicas * step.total_seconds()
        moment += step
    return total / 3600.0


def row(spec_name: str, trace_name: str, spec: ModelDeploymentSpec, trace: Trace) -> None:
    floor = floor_hours(spec, trace)
    for autoscaler in AUTOSCALERS:
        world = World.model_validate({"autoscaler": autoscaler})
        cells = []
        always_on = 0.0
        for timeout in (None, "auto"):
            variant = spec if timeout is None else with_idle_timeout(spec, timeout)
            names = ["always-on", "siesta"] if timeout is None else ["siesta"]
            comparison = compare(variant, trace, world, names)
            by_name = {report.policy: report for report in comparison.reports}
            if timeout is None:
                always_on = by_name["always-on"].node_hours
            siesta = by_name["siesta"]
            cells.append(
                f"{100 * siesta.node_hours / always_on:5.1f}% "
                f"{siesta.cold_starts:3d} ({siesta.cold_starts_in_window}) "
                f"{siesta.waits.p95 or 0:4.0f}s"
            )
        print(
            f"{spec_name:22} {trace_name:30} {autoscaler:18} "
            f"{100 * floor / always_on:5.1f}%   {cells[0]}   {cells[1]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", action="append", default=[], metavar="SPEC.yaml=TRACE.csv")
    args = parser.parse_args()
    print(
        f"{'spec':22} {'trace':30} {'world':18} {'floor':6}   "
        f"{'fixed: share, cold (in window), p95':30}   auto: the same"
    )
    for spec_name, trace_name in PAIRS:
        spec = load_one(EXAMPLES / spec_name, None).spec
        row(spec_name, trace_name, spec, load_trace(EXAMPLES / "traces" / trace_name))
    for spec_name, profile, start, days, zone, users, seed in HELD_OUT:
        first = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone))
        trace = generate_trace(profile, first, days, zone, users, seed)
        spec = load_one(EXAMPLES / spec_name, None).spec
        row(spec_name, f"held-out {profile} {days}d seed {seed}", spec, trace)
    for pair in args.trace:
        spec_path, _, trace_path = pair.partition("=")
        spec = load_one(Path(spec_path), None).spec
        row(Path(spec_path).name, Path(trace_path).name, spec, load_trace(Path(trace_path)))


if __name__ == "__main__":
    main()
