"""N fine-tunes as N ModelDeployments, or as one base model with N LoRA adapters.

Both setups replay the same traces (one per fine-tune) through the spec as written (the
`siesta` policy): separately, as N deployments that each wake, serve and sleep on their
own node; and merged, as one deployment whose pods serve every fine-tune (requests for
different adapters share slots and batches, so a replica carries the same number of
requests at once as without adapters: docs/benchmarks.md measures what that costs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from siesta.api.models import ModelDeploymentSpec
from siesta.sim.compare import run_policy
from siesta.sim.engine import Outcome, SimResult, default_span
from siesta.sim.policies import build_policy
from siesta.sim.report import WaitStats, window_classifier
from siesta.sim.traces import Trace
from siesta.sim.world import ResolvedWorld, World


@dataclass(frozen=True)
class SetupReport:
    setup: str
    deployments: int
    node_hours: float
    cost: float
    requests: int
    served: int
    timed_out: int
    rejected: int
    cold_starts: int
    cold_starts_in_window: int
    waits: WaitStats
    waits_in_window: WaitStats


@dataclass(frozen=True)
class FineTuneComparison:
    world: ResolvedWorld
    start: datetime
    end: datetime
    separate: SetupReport
    adapters: SetupReport

    @property
    def saving(self) -> float:
        """Share of the separate setup's node-hours that the adapters save."""
        if not self.separate.node_hours:
            return 0.0
        return 1.0 - self.adapters.node_hours / self.separate.node_hours


def merge_traces(traces: Sequence[Trace]) -> Trace:
    """One trace with every request of `traces`, in arrival order, over their joint span."""
    requests = sorted((r for t in traces for r in t.requests), key=lambda r: r.arrival)
    starts = [t.start for t in traces if t.start is not None]
    ends = [t.end for t in traces if t.end is not None]
    return Trace(
        requests=tuple(requests),
        start=min(starts) if starts else None,
        end=max(ends) if ends else None,
        source=" + ".join(t.source for t in traces),
    )


def compare_fine_tunes(
    spec: ModelDeploymentSpec,
    traces: Sequence[Trace],
    world: World | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    seed: int = 0,
) -> FineTuneComparison:
    """Replay each trace as its own deployment, then all of them as one base + adapters."""
    if len(traces) < 2:
        raise ValueError("comparing fine-tunes needs a trace per fine-tune (at least two)")
    base = spec.model_copy(update={"adapters": []})
    resolved = (world or World()).resolve(spec)
    merged = merge_traces(traces)
    span_start, span_end = default_span(merged, spec.schedule.timezone)
    start, end = start or span_start, end or span_end
    in_window = window_classifier(spec, start, end)
    policy = build_policy("siesta", base)
    separate = [run_policy(policy, resolved, trace, start, end, seed) for trace in traces]
    together = run_policy(build_policy("siesta", spec), resolved, merged, start, end, seed)
    n = len(traces)
    return FineTuneComparison(
        world=resolved,
        start=start,
        end=end,
        separate=_summarize(f"{n} ModelDeployments", separate, in_window),
        adapters=_summarize(f"1 base + {n} adapters", [together], in_window),
    )


def _summarize(
    setup: str, results: Sequence[SimResult], in_window: Callable[[datetime], bool]
) -> SetupReport:
    requests = [r for result in results for r in result.requests]
    waits = [w for r in requests if (w := r.wait_seconds) is not None]
    window_waits = [
        w for r in requests if (w := r.wait_seconds) is not None and in_window(r.arrival)
    ]
    cold_starts = [c for result in results for c in result.cold_starts]
    node_hours = sum(result.node_seconds() for result in results) / 3600.0
    return SetupReport(
        setup=setup,
        deployments=len(results),
        node_hours=node_hours,
        cost=sum(result.node_seconds() * result.world.price_per_hour for result in results)
        / 3600.0,
        requests=len(requests),
        served=sum(1 for r in requests if r.outcome == Outcome.SERVED),
        timed_out=sum(1 for r in requests if r.outcome == Outcome.TIMED_OUT),
        rejected=sum(1 for r in requests if r.outcome == Outcome.REJECTED),
        cold_starts=len(cold_starts),
        cold_starts_in_window=sum(1 for c in cold_starts if in_window(c.start)),
        waits=WaitStats.of(waits),
        waits_in_window=WaitStats.of(window_waits),
    )


def format_fine_tunes(comparison: FineTuneComparison) -> str:
    header = ["setup", "node-h", "cost $", "cold starts (in window)", "wait p95", "p95 in window"]
    header += ["timeouts", "refused"]
    rows = [header]
    for report in (comparison.separate, comparison.adapters):
        rows.append(
            [
                report.setup,
                f"{report.node_hours:.1f}",
                f"{report.cost:.2f}",
                f"{report.cold_starts} ({report.cold_starts_in_window})",
                _seconds(report.waits.p95),
                _seconds(report.waits_in_window.p95),
                str(report.timed_out),
                str(report.rejected),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(f"adapters save {comparison.saving:.1%} of the node-hours")
    return "\n".join(lines)


def fine_tunes_json(comparison: FineTuneComparison, meta: dict[str, Any]) -> dict[str, Any]:
    """The comparison for `-o json`, with camelCase keys like the policy comparison's."""

    def camel(data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            head, *rest = key.split("_")
            out[head + "".join(p.capitalize() for p in rest)] = (
                camel(value) if isinstance(value, dict) else value
            )
        return out

    setups = [camel(asdict(comparison.separate)), camel(asdict(comparison.adapters))]
    return {**meta, "setups": setups, "saving": comparison.saving}


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
