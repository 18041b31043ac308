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
dollars against always-on. A script, not a test (about a minute on 2 cores):

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
from siesta.sim.compare import Comparison, compare
from siesta.sim.report import PolicyReport
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
    """Three questions of a caller at 22:00 local, a minute apart, 200 tokens each."""
    first = datetime(2026, 11, 24, 22, 0, tzinfo=ZoneInfo(zone))
    requests = tuple(TraceRequest(first + timedelta(minutes=k), None, 200) for k in range(3))
    midnight = first.replace(hour=0)
    return Trace(requests, midnight, midnight + timedelta(days=1))


def run(
    spec: ModelDeploymentSpec,
    trace: Trace,
    stages: Stages,
    option: tuple[str, bool, str | None, bool],
) -> tuple[PolicyReport, Comparison]:
    _, bridged, gpu_after, window = option
    world: dict[str, Any] = stages.world()
    if gpu_after is not None:
        world["bridge"]["gpuAfter"] = gpu_after
    if window:
        world["bridge"]["windows"] = [NIGHT_WINDOW]
    policy = "siesta+bridge" if bridged else "siesta"
    comparison = compare(spec, trace, World.model_validate(world), [policy, "always-on"])
    by_name = {report.policy: report for report in comparison.reports}
    return by_name[policy], comparison


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for stages in STAGE_SETS:
        world = stages.world()
        print(
            f"\n== {stages.name}: GPU node {world['nodeProvisionSeconds']:.0f}s + model "
            f"{world['modelLoadSeconds']:.0f}s; CPU node {world['bridge']['nodeProvisionSeconds']:.0f}s"
            f" + bridge {world['bridge']['modelLoadSeconds']:.0f}s"
        )
        spec = load_one(EXAMPLES / "t4-office-hours.yaml", None).spec
        print("\nlone night call (3 questions at 22:00 Berlin), t4-office-hours, Karpenter")
        print(
            f"{'option':36} {'first token p50':>15} {'p95':>6} {'ratio':>6} "
            f"{'GPU node-min':>12} {'CPU node-min':>12} {'$':>7}"
        )
        baseline: float | None = None
        for option in OPTIONS:
            report, _ = run(spec, lone_night_call(spec.schedule.timezone), stages, option)
            first = report.first_token_at_zero
            # The caller's first token is the first question's; the p50/p95 are over all three.
            if baseline is None:
                baseline = first.max
            ratio = f"{baseline / first.max:.0f}x" if baseline and first.max else "-"
            print(
                f"{option[0]:36} {seconds(first.p50):>15} {seconds(first.p95):>6} {ratio:>6} "
                f"{report.node_hours * 60:12.1f} {report.bridge_node_hours * 60:12.1f} "
                f"{report.total_cost:7.3f}"
            )
        for spec_name, trace_name in WEEKS:
            spec = load_one(EXAMPLES / spec_name, None).spec
            trace = load_trace(EXAMPLES / "traces" / trace_name)
            print(f"\n{trace_name} with {spec_name}, Karpenter")
            print(
                f"{'option':36} {'at zero':>7} {'first token p50':>15} {'p95':>6} "
                f"{'p95 ratio':>9} {'GPU wakes':>9} {'GPU node-h':>10} {'CPU node-h':>10} "
                f"{'total $':>8} {'vs always-on $':>14}"
            )
            baseline = None
            for option in OPTIONS:
                report, _ = run(spec, trace, stages, option)
                first = report.first_token_at_zero
                if baseline is None:
                    baseline = first.p95
                ratio = f"{baseline / first.p95:.1f}x" if baseline and first.p95 else "-"
                share = report.cost_share_of_always_on
                print(
                    f"{option[0]:36} {first.count:7d} {seconds(first.p50):>15} "
                    f"{seconds(first.p95):>6} {ratio:>9} {report.gpu_wakes:9d} "
                    f"{report.node_hours:10.1f} {report.bridge_node_hours:10.1f} "
                    f"{report.total_cost:8.2f} {'-' if share is None else f'{share:.1%}':>14}"
                )


if __name__ == "__main__":
    main()
