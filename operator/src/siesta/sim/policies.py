"""The policies a trace is compared under, each a transformed spec fed through the same decide.

- `siesta`: the spec as written, with the gateway holding requests and waking the model.
- `always-on`: replicas.min = max(1, min), no windows; load still scales up to replicas.max
  (what a plain Deployment with an HPA at minReplicas 1 does).
- `idle-only`: no windows, replicas.min = 0, idleTimeout N (default: the spec's, `auto` too), with the
  same gateway holding and waking (like the KEDA HTTP add-on with scaledownPeriod N).
- `schedule-only`: the spec's windows, min and load scaling, but no activator: nothing holds
  requests or reports demand, so a request that finds no ready replica fails at once
  (like a cron scaler in front of a plain Service).
- `siesta+bridge`: the spec as written plus a CPU bridge (sim/bridge.py): requests that find
  no ready GPU replica are answered on a CPU node while the GPU wakes (or, with gpuAfter,
  instead of waking it). Run with `siesta simulate --bridge` or `--policy siesta+bridge`.

`spec.manualReplicas` is dropped from every policy: a simulation has no `kubectl scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

from siesta.api.durations import format_duration
from siesta.api.models import AUTO, ModelDeploymentSpec

POLICY_NAMES = ("always-on", "idle-only", "schedule-only", "siesta")
"""The policies run by default."""
BRIDGE_POLICY = "siesta+bridge"
ALL_POLICY_NAMES = (*POLICY_NAMES, BRIDGE_POLICY)


@dataclass(frozen=True)
class Policy:
    name: str
    spec: ModelDeploymentSpec
    activator: bool
    """Whether the gateway holds requests for a cold model and reports demand."""
    description: str
    bridge: bool = False
    """Whether a CPU bridge answers while the GPU is not ready."""


def build_policy(name: str, spec: ModelDeploymentSpec, idle_timeout: str | None = None) -> Policy:
    """The spec `name` would run with. `idle_timeout` is N for idle-only (default: the spec's)."""
    base = spec.model_copy(update={"manual_replicas": None})
    no_windows = spec.schedule.model_copy(update={"windows": [], "prewarm": None})
    if name == "siesta":
        return Policy(
            name, base, True, "the spec as written: windows, load, demand wake, idle timeout"
        )
    if name == "always-on":
        replicas = spec.replicas.model_copy(update={"min": max(1, spec.replicas.min)})
        always = base.model_copy(update={"replicas": replicas, "schedule": no_windows})
        return Policy(name, always, True, "replicas.min >= 1, no windows; load may add replicas")
    if name == "idle-only":
        timeout = idle_timeout or (
            AUTO
            if spec.scaling.idle_timeout_auto
            else format_duration(spec.scaling.idle_timeout_delta)
        )
        replicas = spec.replicas.model_copy(update={"min": 0})
        auto = spec.scaling.auto_idle_timeout if timeout == AUTO else None
        scaling = spec.scaling.model_copy(
            update={"idle_timeout": timeout, "auto_idle_timeout": auto}
        )
        idle = base.model_copy(
            update={"replicas": replicas, "schedule": no_windows, "scaling": scaling}
        )
        return Policy(
            name, idle, True, f"no windows, min 0, zero after {timeout} idle; demand wakes it"
        )
    if name == BRIDGE_POLICY:
        return Policy(
            name,
            base,
            True,
            "the spec as written plus a CPU bridge while the GPU is not ready",
            True,
        )
    if name == "schedule-only":
        return Policy(
            name, base, False, "windows and load as written; no activator, so no demand wake"
        )
    raise ValueError(f"unknown policy {name!r} (known: {', '.join(ALL_POLICY_NAMES)})")
