"""A PNG of a comparison: GPU nodes and replicas over time per policy, and request waits.

matplotlib (the `plot` extra) is imported only here, with the Agg backend, only when a
plot is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from siesta.sim.compare import Comparison
from siesta.sim.engine import Outcome, SimResult
from siesta.sim.report import window_classifier

COLORS = {
    "always-on": "#7f7f7f",
    "idle-only": "#d62728",
    "schedule-only": "#1f77b4",
    "siesta": "#2ca02c",
}


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def step_series(
    changes: Iterable[tuple[datetime, int]], start: datetime, end: datetime
) -> tuple[list[datetime], list[int]]:
    """A step function from (time, +/-delta) changes, clipped to [start, end]."""
    times, values, level = [start], [0], 0
    for moment, delta in sorted(changes, key=lambda change: change[0]):
        level += delta
        clipped = min(max(moment, start), end)
        if clipped == times[-1]:
            values[-1] = level
        else:
            times.append(clipped)
            values.append(level)
    times.append(end)
    values.append(values[-1])
    return times, values


def nodes_over_time(result: SimResult) -> tuple[list[datetime], list[int]]:
    changes = [(node.requested, 1) for node in result.nodes]
    changes += [(node.removed, -1) for node in result.nodes if node.removed is not None]
    return step_series(changes, result.start, result.end)


def bridge_nodes_over_time(result: SimResult) -> tuple[list[datetime], list[int]]:
    """The CPU bridge's nodes (none without a bridge)."""
    changes = [(node.requested, 1) for node in result.bridge_nodes]
    changes += [(node.removed, -1) for node in result.bridge_nodes if node.removed is not None]
    return step_series(changes, result.start, result.end)


def ready_over_time(result: SimResult) -> tuple[list[datetime], list[int]]:
    changes = [(pod.ready_at, 1) for pod in result.pods if pod.ready_at is not None]
    changes += [
        (pod.removed, -1)
        for pod in result.pods
        if pod.removed is not None and pod.ready_at is not None
    ]
    return step_series(changes, result.start, result.end)


def _window_spans(comparison: Comparison) -> list[tuple[datetime, datetime]]:
    classify = window_classifier(comparison.spec, comparison.start, comparison.end)
    from siesta.policy import CompiledSchedule, ScheduleError

    plain = comparison.spec.schedule.model_copy(update={"prewarm": None})
    try:
        schedule = CompiledSchedule(plain, 0, comparison.spec.replicas.max)
    except ScheduleError:
        return []
    changes = schedule.changes_between(comparison.start, comparison.end)
    spans: list[tuple[datetime, datetime]] = []
    for change, following in zip(changes, [*changes[1:], None], strict=True):
        if classify(change.time):
            spans.append((change.time, following.time if following else comparison.end))
    return spans


def write_plot(comparison: Comparison, path: Path, title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        mdates: Any = importlib.import_module("matplotlib.dates")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install matplotlib (or the siesta-operator "
            "distribution's [plot] extra: pip install -e './operator[plot]' in a checkout)"
        ) from error

    zone = ZoneInfo(comparison.spec.schedule.timezone)
    results = comparison.results
    spans = _window_spans(comparison)
    figure, axes = plt.subplots(
        len(results) + 1, 1, figsize=(14, 2.0 * len(results) + 3.0), sharex=True, squeeze=False
    )
    columns: list[Any] = [row[0] for row in axes]
    top = max(comparison.spec.replicas.max, 1) + 0.5
    for axis, result, report in zip(columns, results, comparison.reports, strict=False):
        for begin, finish in spans:
            axis.axvspan(begin, finish, color="#fff2cc", zorder=0)
        times, nodes = nodes_over_time(result)
        axis.fill_between(times, nodes, step="post", color="#cccccc", label="GPU nodes", zorder=1)
        times, ready = ready_over_time(result)
        color = COLORS.get(result.policy, "#9467bd")
        axis.step(
            times, ready, where="post", color=color, linewidth=1.4, label="ready replicas", zorder=2
        )
        if result.bridge is not None:
            times, cpu = bridge_nodes_over_time(result)
            axis.step(
                times,
                cpu,
                where="post",
                color="#8c564b",
                linestyle="--",
                linewidth=1.0,
                label="bridge CPU nodes",
                zorder=2,
            )
        axis.set_ylim(0, top)
        axis.set_ylabel(result.policy, rotation=0, ha="right", va="center")
        summary = (
            f"{report.node_hours:.1f} node-h (${report.cost:.2f}), "
            + (
                # a second "$" would start matplotlib's math text: escaped
                f"bridge {report.bridge_node_hours:.1f} CPU node-h (\\${report.bridge_cost:.2f}), "
                if report.bridge
                else ""
            )
            + f"{report.cold_starts} cold starts ({report.cold_starts_in_window} in window), "
            f"p95 wait {report.waits.p95 or 0:.1f}s, "
            f"{report.timed_out} timeouts, {report.rejected} refused"
        )
        axis.text(0.005, 0.92, summary, transform=axis.transAxes, fontsize=8, va="top")
        axis.legend(loc="upper right", fontsize=7)
    waits_axis = columns[-1]
    for result in results:
        color = COLORS.get(result.policy, "#9467bd")
        served = [
            r
            for r in result.requests
            if r.outcome != Outcome.REJECTED and r.wait_seconds is not None
        ]
        waits_axis.scatter(
            [r.arrival for r in served],
            [r.wait_seconds or 0.0 for r in served],
            s=6,
            color=color,
            label=result.policy,
            alpha=0.6,
        )
    waits_axis.set_yscale("symlog", linthresh=1.0)
    waits_axis.set_ylabel("wait (s)")
    waits_axis.legend(loc="upper right", fontsize=7)
    days = (comparison.end - comparison.start).total_seconds() / 86400.0
    if days > 2:
        waits_axis.xaxis.set_major_locator(mdates.DayLocator(tz=zone))
        waits_axis.xaxis.set_major_formatter(mdates.DateFormatter("%a %d", tz=zone))
    else:
        waits_axis.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3), tz=zone))
        waits_axis.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M", tz=zone))
    waits_axis.set_xlim(comparison.start, comparison.end)
    waits_axis.set_xlabel(f"time ({comparison.spec.schedule.timezone})")
    figure.suptitle(title or "siesta simulate", fontsize=10)
    figure.text(0.01, 0.005, "shaded: schedule windows of the spec as written", fontsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
