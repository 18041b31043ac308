"""`siesta simulate --fine-tune-trace`: N fine-tunes as N deployments vs one base + N adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from siesta.api.models import ModelDeploymentSpec
from siesta.sim.fine_tunes import compare_fine_tunes, format_fine_tunes, merge_traces
from siesta.sim.traces import Trace, TraceRequest

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "https://models.example.com/base.gguf"},
            "adapters": [
                {"name": "a", "uri": "https://models.example.com/a.gguf"},
                {"name": "b", "uri": "https://models.example.com/b.gguf"},
            ],
            "gpu": {"products": ["Tesla-T4"]},
            "replicas": {"min": 0, "max": 1},
            "scaling": {"idleTimeout": "15m", "scaleDownDelay": "5m", "wakeTimeout": "10m"},
        }
    )


def trace(*seconds: float) -> Trace:
    return Trace(
        tuple(TraceRequest(T0 + timedelta(seconds=at), 10.0) for at in seconds),
        start=T0,
        end=T0 + timedelta(hours=3),
    )


def test_merged_trace_keeps_every_request_in_arrival_order() -> None:
    merged = merge_traces([trace(0, 120), trace(60)])
    assert [r.arrival - T0 for r in merged.requests] == [
        timedelta(seconds=0),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert (merged.start, merged.end) == (T0, T0 + timedelta(hours=3))


def test_one_wake_serves_every_fine_tune() -> None:
    # Fine-tune b is asked for during a's cold start: as adapters it rides on the same wake.
    result = compare_fine_tunes(spec(), [trace(0), trace(60)])
    separate, adapters = result.separate, result.adapters
    assert (separate.deployments, adapters.deployments) == (2, 1)
    assert separate.requests == adapters.requests == 2
    assert separate.served == adapters.served == 2
    assert (separate.cold_starts, adapters.cold_starts) == (2, 1)
    # Two nodes for about the same stretch against one.
    assert adapters.node_hours == pytest.approx(separate.node_hours / 2, rel=0.1)
    assert 0.4 < result.saving < 0.6
    table = format_fine_tunes(result)
    assert "2 ModelDeployments" in table
    assert "1 base + 2 adapters" in table


def test_one_trace_is_not_a_comparison() -> None:
    with pytest.raises(ValueError, match="at least two"):
        compare_fine_tunes(spec(), [trace(0)])
