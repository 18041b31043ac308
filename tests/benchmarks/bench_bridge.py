"""Benchmark: night request -> first token, with and without the CPU bridge, in the simulator's
Karpenter world with every stage of a wake set to a published EKS figure.

The stages (docs/benchmarks.md, "The CPU bridge", names each figure's source) add up to the
simulator's node and load times: GPU node ready = Karpenter launch + GPU stack; GPU model
ready = image pull + GGUF fetch + load; the bridge's CPU node has no GPU stage. Two sets:
`EKS as shipped` (the GPU Operator's driver container, an uncached CUDA image, one fetch
stream) and `EKS tuned` (a driver AMI, the image on the node, parallel fetch).

For each set it replays (1) one lone night call (three questions in two minutes at 22:00),
and (2) the repository's example weeks, through `siesta.sim` with: no bridge, a bridge that
wakes with the GPU, a bridge with gpuAfter 10m, and gpuAfter 10m plus a night window in which
the bridge stays up. It prints first-token p50/p95 of the requests that found no GPU ready,
the ratio without/with the bridge, GPU and CPU node-minutes per night call, and the week's
dollars against always-on. A script, not a test (about three minutes on 2 cores):

    .venv/bin/python tests/benchmarks/bench_bridge.py
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from siesta.api.loader import load_one
from siesta.api.models import ModelDeploymentSpec
from siesta.sim.compare import run_policy
from siesta.sim.engine import default_span
from siesta.sim.policies import build_policy
from siesta.sim.report import PolicyReport, summarize, window_classifier
from siesta.sim.traces import Trace, TraceRequest, load_trace
from siesta.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
GIB = 1024**3


@dataclass(frozen=True)
class Stages:
    """Seconds of each wake stage (docs/benchmarks.md names the source of each)."""

    name: str
    karpenter_launch: float
    gpu_stack: float
    cuda_image_pull: float
    cpu_image_pull: float
    gguf_fetch: float
    gpu_load: float
    cpu_load: float

    def world(self) -> dict[str, Any]:
        return {
            "autoscaler": "karpenter",
            "nodeProvisionSeconds": self.karpenter_launch + self.gpu_stack,
            "modelLoadSeconds": self.cuda_image_pull + self.gguf_fetch + self.gpu_load,
            "bridge": {
                "nodeProvisionSeconds": self.karpenter_launch,
                "modelLoadSeconds": self.cpu_image_pull + self.gguf_fetch + self.cpu_load,
            },
        }


# A 4 GiB GGUF (a 7B Q4_K_M) over one S3 stream at ~87.5 MB/s, or 8 ranged streams.
ONE_STREAM = 4 * GIB / 87.5e6
EIGHT_STREAMS = ONE_STREAM / 8
STAGE_SETS = [
    Stages(
        "EKS as shipped",
        karpenter_launch=45.0,  # NodeClaim -> node registered, 30-60 s
        gpu_stack=180.0,  # GPU Operator driver container, 1.5-5 min (3-5 min per NVIDIA)
        cuda_image_pull=334.0,  # multi-GB CUDA image, uncached
        cpu_image_pull=30.0,  # the CPU image, an order smaller (estimate)
        gguf_fetch=ONE_STREAM,
        gpu_load=10.0,  # 4 GiB from the page cache into GPU memory
        cpu_load=5.0,  # mmap: pages fault in as the first prompt runs
    ),
    Stages(
        "EKS tuned",
        karpenter_launch=45.0,
        gpu_stack=10.0,  # driver in the AMI: only the device plugin starts
        cuda_image_pull=5.0,  # image on the node (snapshot or pre-pull)
        cpu_image_pull=5.0,
        gguf_fetch=EIGHT_STREAMS,
        gpu_load=10.0,
        cpu_load=5.0,
    ),
]
# name, bridge on, gpuAfter, night window
OPTIONS: list[tuple[str, bool, str | None, bool]] = [
    ("no bridge", False, None, False),
    ("bridge, GPU wakes with it", True, None, False),
    ("bridge, gpuAfter 10m", True, "10m", False),
    ("bridge window 20-08 + gpuAfter 10m", True, "10m", True),
]
NIGHT_WINDOW = {"name": "nights", "start": "0 20 * * *", "duration": "12h"}
WEEKS = [
    ("t4-office-hours.yaml", "office-week-berlin.csv"),
    ("a10g-on-demand.yaml", "spiky-week.csv"),
]


def lone_night_call(zone: str) -> Trace:
    """Three questions of a caller at 22:00 local, a minute apart, 200 tokens each; the
    simulated period is the night around them (21:00-05:00), outside every office window."""
    first = datetime(2026, 11, 24, 22, 0, tzinfo=ZoneInfo(zone))
    requests = tuple(TraceRequest(first + timedelta(minutes=k), None, 200) for k in range(3))
    return Trace(requests, first - timedelta(hours=1), first + timedelta(hours=7))


def run(
    spec: ModelDeploymentSpec,
    trace: Trace,
    stages: Stages,
    option: tuple[str, bool, str | None, bool],
    always_on: float | None = None,
) -> PolicyReport:
    """One option on one trace; shares against `always_on` GPU node-hours (when given)."""
    _, bridged, gpu_after, window = option
    settings: dict[str, Any] = stages.world()
    if gpu_after is not None:
        settings["bridge"]["gpuAfter"] = gpu_after
    if window:
        settings["bridge"]["windows"] = [NIGHT_WINDOW]
    world = World.model_validate(settings)
    start, end = default_span(trace, spec.schedule.timezone)
    policy = build_policy("siesta+bridge" if bridged else "siesta", spec)
    bridge = world.resolve_bridge(spec) if bridged else None
    result = run_policy(policy, world.resolve(spec), trace, start, end, bridge=bridge)
    in_window = window_classifier(spec, start, end)
    return summarize(result, policy.description, in_window, always_on)


def always_on_hours(spec: ModelDeploymentSpec, trace: Trace, stages: Stages) -> float:
    world = World.model_validate(stages.world()).resolve(spec)
    start, end = default_span(trace, spec.schedule.timezone)
    result = run_policy(build_policy("always-on", spec), world, trace, start, end)
    return result.node_seconds() / 3600.0


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def lone_call_table(stages: Stages) -> None:
    spec = load_one(EXAMPLES / "t4-office-hours.yaml", None).spec
    print("\nlone night call (3 questions at 22:00 Berlin), t4-office-hours, Karpenter")
    print(
        f"{'option':36} {'first question':>14} {'ratio':>6} {'3 questions p50':>15} "
        f"{'p95':>5} {'GPU node-min':>12} {'CPU node-min':>12} {'$':>6}"
    )
    baseline: float | None = None
    for option in OPTIONS:
        report = run(spec, lone_night_call(spec.schedule.timezone), stages, option)
        first = report.first_token_at_zero
        # The caller's first token: the first question waits longest (max).
        if baseline is None:
            baseline = first.max
        ratio = f"{baseline / first.max:.1f}x" if baseline and first.max else "-"
        print(
            f"{option[0]:36} {seconds(first.max):>14} {ratio:>6} {seconds(first.p50):>15} "
            f"{seconds(first.p95):>5} {report.node_hours * 60:12.1f} "
            f"{report.bridge_node_hours * 60:12.1f} {report.total_cost:6.3f}"
        )


def week_table(stages: Stages, spec_name: str, trace_name: str) -> None:
    spec = load_one(EXAMPLES / spec_name, None).spec
    trace = load_trace(EXAMPLES / "traces" / trace_name)
    print(f"\n{trace_name} with {spec_name}, Karpenter")
    print(
        f"{'option':36} {'at zero':>7} {'first token p50':>15} {'p95':>6} "
        f"{'p95 ratio':>9} {'GPU starts':>10} {'GPU node-h':>10} {'CPU node-h':>10} "
        f"{'total $':>8} {'vs always-on $':>14}"
    )
    baseline: float | None = None
    reference = always_on_hours(spec, trace, stages)
    for option in OPTIONS:
        report = run(spec, trace, stages, option, reference)
        first = report.first_token_at_zero
        if baseline is None:
            baseline = first.p95
        ratio = f"{baseline / first.p95:.1f}x" if baseline and first.p95 else "-"
        share = report.cost_share_of_always_on
        print(
            f"{option[0]:36} {first.count:7d} {seconds(first.p50):>15} "
            f"{seconds(first.p95):>6} {ratio:>9} {report.gpu_starts:10d} "
            f"{report.node_hours:10.1f} {report.bridge_node_hours:10.1f} "
            f"{report.total_cost:8.2f} {'-' if share is None else f'{share:.1%}':>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lone-call-only", action="store_true", help="skip the weeks")
    args = parser.parse_args()
    for stages in STAGE_SETS:
        world = stages.world()
        print(
            f"\n== {stages.name}: GPU node {world['nodeProvisionSeconds']:.0f}s + model "
            f"{world['modelLoadSeconds']:.0f}s; CPU node "
            f"{world['bridge']['nodeProvisionSeconds']:.0f}s + bridge "
            f"{world['bridge']['modelLoadSeconds']:.0f}s"
        )
        lone_call_table(stages)
        if not args.lone_call_only:
            for spec_name, trace_name in WEEKS:
                week_table(stages, spec_name, trace_name)


if __name__ == "__main__":
    main()
