"""Replay one trace under several policies and summarise each run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from siesta.api.models import ModelDeploymentSpec
from siesta.sim.bridge import ResolvedBridge
from siesta.sim.engine import SimResult, Simulation, default_span
from siesta.sim.policies import POLICY_NAMES, Policy, build_policy
from siesta.sim.report import PolicyReport, summarize, window_classifier
from siesta.sim.traces import Trace
from siesta.sim.world import ResolvedWorld, World


@dataclass(frozen=True)
class Comparison:
    spec: ModelDeploymentSpec
    world: ResolvedWorld
    start: datetime
    end: datetime
    policies: list[Policy]
    results: list[SimResult]
    reports: list[PolicyReport]
    bridge: ResolvedBridge | None = None


def run_policy(
    policy: Policy,
    world: ResolvedWorld,
    trace: Trace,
    start: datetime,
    end: datetime,
    seed: int = 0,
    bridge: ResolvedBridge | None = None,
) -> SimResult:
    """`bridge` is used only by a policy with a bridge."""
    simulation = Simulation(
        policy.spec,
        world,
        trace,
        start,
        end,
        policy=policy.name,
        activator=policy.activator,
        seed=seed,
        bridge=bridge if policy.bridge else None,
    )
    return simulation.run()


def compare(
    spec: ModelDeploymentSpec,
    trace: Trace,
    world: World | None = None,
    policy_names: list[str] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    idle_timeout: str | None = None,
    seed: int = 0,
) -> Comparison:
    """Every policy on the same trace, world and seed. Shares are relative to always-on."""
    world = world or World()
    resolved = world.resolve(spec)
    span_start, span_end = default_span(trace, spec.schedule.timezone)
    start, end = start or span_start, end or span_end
    names = policy_names or list(POLICY_NAMES)
    policies = [build_policy(name, spec, idle_timeout) for name in names]
    bridge = world.resolve_bridge(spec) if any(p.bridge for p in policies) else None
    results = [run_policy(policy, resolved, trace, start, end, seed, bridge) for policy in policies]
    # "In window" always means the windows of the spec as written, for every policy.
    in_window = window_classifier(spec, start, end)
    always_on: float | None = None
    for result in results:
        if result.policy == "always-on":
            always_on = result.node_seconds() / 3600.0
    if always_on is None and "always-on" not in names:
        reference = run_policy(build_policy("always-on", spec), resolved, trace, start, end, seed)
        always_on = reference.node_seconds() / 3600.0
    reports = [
        summarize(result, policy.description, in_window, always_on)
        for policy, result in zip(policies, results, strict=True)
    ]
    return Comparison(spec, resolved, start, end, policies, results, reports, bridge)
