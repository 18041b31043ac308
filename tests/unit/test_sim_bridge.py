"""The simulator's CPU bridge at fixed times: who answers a night request, when, and what the
CPU and GPU nodes cost. The bridge's decision is the operator's (siesta.policy.bridge).

World in every case unless stated: Karpenter (an empty node goes 60 s + 20 s after its pod),
GPU node ready 180 s after it is requested, GPU model load 60 s, first token 0.3 s on the
GPU; the bridge's CPU node ready 45 s after it is requested, bridge load 30 s, first token
3 s, generation 8 tokens/s against the GPU's 20 (a 10 s GPU answer takes 25 s on the CPU).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from siesta.api.models import BridgeSettings, ModelDeploymentSpec
from siesta.cli import main
from siesta.sim.engine import Outcome, SimResult, Simulation
from siesta.sim.traces import Trace, TraceRequest
from siesta.sim.world import World

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday
HOUR = 3600.0
REMOVAL = 80.0  # Karpenter: consolidateAfter 60 s + 20 s
EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"


def spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "https://models.example.com/m.gguf"},
            "gpu": {"products": ["Tesla-T4"]},
            "replicas": {"min": 0, "max": 1},
            "scaling": {"idleTimeout": "15m", "scaleDownDelay": "5m", "wakeTimeout": "10m"},
        }
    )


def trace(*requests: tuple[float, float]) -> Trace:
    """Requests as (seconds after T0, duration seconds on the GPU)."""
    return Trace(
        tuple(TraceRequest(T0 + timedelta(seconds=at), duration) for at, duration in requests)
    )


def simulate(the_trace: Trace, hours: float = 3.0, **bridge: Any) -> SimResult:
    world = World.model_validate({"autoscaler": "karpenter", "bridge": bridge})
    the_spec = spec()
    end = T0 + timedelta(hours=hours)
    return Simulation(
        the_spec,
        world.resolve(the_spec),
        the_trace,
        T0,
        end,
        bridge=world.resolve_bridge(the_spec),
    ).run()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_lone_night_request_is_answered_by_the_bridge_while_the_gpu_wakes_with_it() -> None:
    # 01:00 a request; bridge and GPU both requested. CPU node +45, bridge ready +75: the
    # bridge takes it (first token +78) and answers in 25 s. GPU node +180, ready +240: the
    # bridge, idle since +100, goes at +240 and its node 80 s later.
    result = simulate(trace((HOUR, 10.0)))
    [request] = result.requests
    assert request.outcome == Outcome.SERVED
    assert request.served_by == "bridge"
    assert request.at_zero
    assert request.first_token_wait == pytest.approx(78.0)
    assert request.end == at(HOUR + 100)
    assert result.bridge_replicas == [(at(HOUR), 1), (at(HOUR + 240), 0)]
    [cpu_node] = result.bridge_nodes
    assert (cpu_node.requested, cpu_node.removed) == (at(HOUR), at(HOUR + 240 + REMOVAL))
    assert result.bridge_node_seconds() == 240 + REMOVAL
    # The GPU last saw the request waiting at the gateway at the metric tick of +60 (the
    # bridge's own work never counts as its load): idle 15 minutes later, its node 80 s after.
    assert (at(HOUR), 1) in result.replicas
    assert result.replicas[-1] == (at(HOUR + 60 + 900), 0)
    assert result.node_seconds() == 60 + 900 + REMOVAL


def test_a_long_answer_finishes_on_the_bridge_and_never_keeps_the_gpu_awake() -> None:
    # A 200 s GPU answer takes 500 s on the CPU: the bridge answers from +75 to +575. The GPU
    # is ready at +240 and a request at +300 goes to it; the bridge hands over when its
    # answer ends (+575). The GPU's idle timeout counts from its own last activity (the
    # request at +300), not from the bridge's answer that ran on until +575.
    result = simulate(trace((HOUR, 200.0), (HOUR + 300, 10.0)))
    assert [r.served_by for r in result.requests] == ["bridge", "gpu"]
    assert result.requests[0].end == at(HOUR + 575)
    assert result.requests[1].first_token_wait == pytest.approx(0.3)
    assert result.bridge_replicas == [(at(HOUR), 1), (at(HOUR + 575), 0)]
    assert result.replicas[-1] == (at(HOUR + 300 + 900), 0)


def test_gpu_after_and_windows_come_from_spec_bridge() -> None:
    with_bridge = spec().model_copy(
        update={"bridge": BridgeSettings(gpuAfter="10m", windows=[night()])}
    )
    world = World.model_validate({"autoscaler": "karpenter"})
    bridge = world.resolve_bridge(with_bridge)
    assert bridge.gpu_after_seconds == 600.0
    assert [w.name for w in bridge.windows] == ["nights"]
    overridden = World.model_validate({"bridge": {"gpuAfter": "2m"}}).resolve_bridge(with_bridge)
    assert overridden.gpu_after_seconds == 120.0


def test_without_a_bridge_the_same_request_waits_for_the_gpu() -> None:
    world = World.model_validate({"autoscaler": "karpenter"})
    result = Simulation(spec(), world.resolve(spec()), trace((HOUR, 10.0)), T0, at(3 * HOUR)).run()
    [request] = result.requests
    assert request.served_by == "gpu"
    assert request.first_token_wait == pytest.approx(240.3)
    assert result.bridge_nodes == []


def test_gpu_never_wakes_when_gpu_after_is_longer_than_the_conversation() -> None:
    # Three questions over two minutes; gpuAfter 10m. The first two wait for the bridge
    # (ready +75), the third finds it ready. The bridge stays for the idle timeout after the
    # last request (+120 + 15m) and its node 80 s more. No GPU node at all.
    result = simulate(trace((HOUR, 10.0), (HOUR + 60, 10.0), (HOUR + 120, 10.0)), gpuAfter="10m")
    assert [r.served_by for r in result.requests] == ["bridge"] * 3
    assert [r.first_token_wait for r in result.requests] == pytest.approx([78.0, 18.0, 3.0])
    assert result.nodes == []
    assert result.replicas == [(T0, 0)]
    assert result.bridge_replicas == [(at(HOUR), 1), (at(HOUR + 120 + 900), 0)]
    assert result.bridge_node_seconds() == 120 + 900 + REMOVAL


def test_gpu_wakes_when_demand_is_still_there_after_gpu_after() -> None:
    # gpuAfter 2m from the first request (01:00). At 01:02 nothing is in flight (the first
    # two answers ended at +100), so the GPU stays asleep; the request at +180 is demand
    # after gpuAfter: the GPU wakes then, and the bridge answers it meanwhile.
    result = simulate(trace((HOUR, 10.0), (HOUR + 60, 10.0), (HOUR + 180, 10.0)), gpuAfter="2m")
    assert [r.served_by for r in result.requests] == ["bridge"] * 3
    assert (at(HOUR + 180), 1) in result.replicas
    assert not any(t < at(HOUR + 180) and r > 0 for t, r in result.replicas)
    [gpu_node] = result.nodes
    assert gpu_node.requested == at(HOUR + 180)


def test_a_bridge_window_keeps_the_bridge_up_and_a_night_request_answers_in_seconds() -> None:
    # Window 22:00 for 9 h: open at the start (since Sunday 22:00) until 07:00, again from
    # 22:00. A request at 03:00 finds the bridge ready: first token after 3 s, no GPU node
    # (gpuAfter 1h). The CPU nodes: 00:00 to 07:01:20, then 22:00 to the end (24:00).
    result = simulate(trace((3 * HOUR, 10.0)), hours=24.0, gpuAfter="1h", windows=[night()])
    [request] = result.requests
    assert request.served_by == "bridge"
    assert request.first_token_wait == pytest.approx(3.0)
    assert result.nodes == []
    assert result.bridge_replicas == [(T0, 1), (at(7 * HOUR), 0), (at(22 * HOUR), 1)]
    assert result.bridge_node_seconds() == 7 * HOUR + REMOVAL + 2 * HOUR


def night() -> dict[str, str]:
    return {"name": "nights", "start": "0 22 * * *", "duration": "9h"}


def test_simulate_bridge_reports_cpu_node_hours_and_first_token_next_to_the_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_file = tmp_path / "night.csv"
    trace_file.write_text(
        "# span: 2026-11-23T00:00:00Z 2026-11-24T00:00:00Z\n"
        "timestamp,duration\n2026-11-23T01:00:00Z,10\n"
    )
    arguments = [
        "simulate",
        "-f",
        str(EXAMPLES / "a10g-on-demand.yaml"),
        "--trace",
        str(trace_file),
        "--autoscaler",
        "karpenter",
        "--policy",
        "siesta",
        "--bridge",
        "--bridge-gpu-after",
        "10m",
    ]
    assert main([*arguments, "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    siesta, bridged = report["policies"]
    assert [siesta["policy"], bridged["policy"]] == ["siesta", "siesta+bridge"]
    assert report["bridge"]["gpuAfterSeconds"] == 600.0
    assert bridged["nodeHours"] == 0.0  # gpuAfter: the lone request costs no GPU node
    assert bridged["bridgeNodeHours"] > 0.0
    assert bridged["bridgeCost"] == pytest.approx(bridged["bridgeNodeHours"] * 0.4032)
    assert siesta["firstTokenAtZero"]["p50"] > 200  # waits for the GPU node
    assert bridged["firstTokenAtZero"]["p50"] == pytest.approx(78.0)
    assert main(arguments) == 0
    table = capsys.readouterr().out
    assert "CPU node-h" in table
    assert "first token at zero p50" in table
    assert "bridge: m7i.2xlarge at $0.4032/h" in table


def test_a_bridge_window_that_does_not_parse_is_a_usage_error(tmp_path: Path) -> None:
    trace_file = tmp_path / "night.csv"
    trace_file.write_text("timestamp,duration\n2026-11-23T01:00:00Z,10\n")
    arguments = ["simulate", "-f", str(EXAMPLES / "a10g-on-demand.yaml")]
    arguments += ["--trace", str(trace_file), "--bridge", "--bridge-window", "0 22 * * *"]
    assert main(arguments) == 2


def test_a_spec_with_spec_bridge_is_simulated_with_and_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "night.yaml"
    manifest.write_text(
        "apiVersion: siesta.dev/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: night, namespace: ai}\n"
        "spec:\n  model: {uri: 'https://models.example.com/m.gguf'}\n"
        "  scaling: {idleTimeout: 15m}\n  bridge: {gpuAfter: 10m}\n"
    )
    trace_file = EXAMPLES / "traces" / "night-call-berlin.csv"
    arguments = ["simulate", "-f", str(manifest), "--trace", str(trace_file), "-o", "json"]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    policies = {p["policy"]: p for p in report["policies"]}
    assert "siesta+bridge" in policies
    assert report["bridge"]["gpuAfterSeconds"] == 600.0  # spec.bridge.gpuAfter
    assert policies["siesta+bridge"]["nodeHours"] == 0.0
    assert policies["siesta"]["nodeHours"] > 0.0
    assert main([*arguments, "--policy", "siesta"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in only["policies"]] == ["siesta"]
