"""The CPU bridge in the simulator: its world (a CPU node, its price and start times) and
the pure rule that says when it runs and when the GPU may wake.

The rule follows the agreed design of `spec.bridge` (docs/cost-model.md, "The CPU bridge"):
- a request that finds no ready GPU replica wakes the bridge; the GPU wakes with it, or,
  with `gpuAfter`, only if demand is still there `gpuAfter` after the first request of the
  episode (so a lone night question costs no GPU node);
- the bridge goes back to zero once a GPU replica is ready and its last request ended, or,
  with no GPU woken, after the model's idle timeout without requests; inside a bridge
  window it stays at one replica;
- a bridge never keeps a GPU awake: once the GPU has replicas, only requests the gateway
  holds count as its demand, never the bridge's.
The operator's own rule lives in the operator (policy); this one is the simulator's model of
it, kept pure so it is tested at fixed times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from siesta.api.durations import parse_duration
from siesta.api.models import ModelDeploymentSpec, Schedule, ScheduleWindow
from siesta.policy import CompiledSchedule, ScheduleError

# On-demand, Linux, us-east-1, USD per instance-hour. m7i.large is $0.1008 (DoiT, "AWS EC2
# pricing", doit.com/blog/aws-ec2-pricing, read 2026-12-06); sizes of a family are priced in
# proportion to their vCPUs. Set current prices with --bridge-price or the world file.
CPU_INSTANCE_PRICES: dict[str, float] = {
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
}
DEFAULT_CPU_INSTANCE = "m7i.2xlarge"


def _seconds(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return parse_duration(value).total_seconds()
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class BridgeWorld(BaseModel):
    """The bridge's part of the world (the `bridge:` key of a --world file). Seconds."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    instance_type: str = Field(
        default=DEFAULT_CPU_INSTANCE, description="CPU instance type of the bridge's node."
    )
    price_per_hour: float | None = Field(
        default=None, gt=0, description="USD per instance-hour; default: CPU_INSTANCE_PRICES."
    )
    node_provision_seconds: Seconds = Field(
        default=45.0,
        description="CPU node request -> node ready (launch and kubelet join; no GPU stack).",
    )
    model_load_seconds: Seconds = Field(
        default=30.0,
        description="Bridge pod on a ready node -> ready (CPU image pull, GGUF fetch, load).",
    )
    concurrency: int = Field(default=2, ge=1, description="Requests the bridge serves at once.")
    tokens_per_second: float = Field(
        default=8.0, gt=0, description="Generation speed of one sequence on the CPU."
    )
    first_token_seconds: Seconds = Field(
        default=3.0, description="A request taken by the bridge -> its first token (prompt)."
    )
    gpu_after: Seconds | None = Field(
        default=None,
        description="spec.bridge.gpuAfter: wake the GPU only if demand lasts this long "
        "(unset: the GPU wakes with the bridge).",
    )
    windows: list[ScheduleWindow] = Field(
        default_factory=list,
        description="spec.bridge.windows: the bridge is kept at one replica inside them.",
    )


class ResolvedBridge(BaseModel):
    """A BridgeWorld with its price and the spec's timezone and idle timeout filled in."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    instance_type: str
    price_per_hour: float
    node_provision_seconds: float
    model_load_seconds: float
    concurrency: int
    tokens_per_second: float
    first_token_seconds: float
    gpu_after_seconds: float | None
    idle_timeout_seconds: float
    timezone: str
    windows: list[ScheduleWindow]


class BridgeError(ValueError):
    """A bridge setting that cannot be used."""


def spec_bridge_defaults(spec: ModelDeploymentSpec) -> dict[str, object]:
    """gpuAfter and windows from `spec.bridge` when the spec has one (the API's field)."""
    bridge = getattr(spec, "bridge", None)
    if bridge is None:
        return {}
    found: dict[str, object] = {}
    gpu_after = getattr(bridge, "gpu_after", None)
    if gpu_after is not None:
        found["gpu_after"] = _seconds(gpu_after)
    windows = getattr(bridge, "windows", None)
    if windows:
        found["windows"] = [ScheduleWindow.model_validate(w.model_dump()) for w in windows]
    return found


def resolve_bridge(bridge: BridgeWorld, spec: ModelDeploymentSpec) -> ResolvedBridge:
    price = bridge.price_per_hour
    if price is None:
        if bridge.instance_type not in CPU_INSTANCE_PRICES:
            known = ", ".join(sorted(CPU_INSTANCE_PRICES))
            raise BridgeError(
                f"no price known for the bridge's {bridge.instance_type!r} (known: {known}); "
                "set --bridge-price"
            )
        price = CPU_INSTANCE_PRICES[bridge.instance_type]
    resolved = ResolvedBridge(
        instance_type=bridge.instance_type,
        price_per_hour=price,
        node_provision_seconds=bridge.node_provision_seconds,
        model_load_seconds=bridge.model_load_seconds,
        concurrency=bridge.concurrency,
        tokens_per_second=bridge.tokens_per_second,
        first_token_seconds=bridge.first_token_seconds,
        gpu_after_seconds=bridge.gpu_after,
        idle_timeout_seconds=spec.scaling.idle_timeout_delta.total_seconds(),
        timezone=spec.schedule.timezone,
        windows=bridge.windows,
    )
    bridge_windows(resolved)  # fail early on a window that does not compile
    return resolved


def bridge_windows(bridge: ResolvedBridge) -> CompiledSchedule | None:
    """The bridge's windows as a schedule whose floor is 1 inside them (None: no windows)."""
    if not bridge.windows:
        return None
    schedule = Schedule(timezone=bridge.timezone, windows=bridge.windows)
    try:
        return CompiledSchedule(schedule, 0, 1)
    except ScheduleError as error:
        raise BridgeError(f"bridge window: {error}") from error


@dataclass(frozen=True)
class BridgeView:
    """What the bridge rule sees at one instant (the simulated gateway, bridge and GPU)."""

    now: datetime
    in_window: bool
    held: int
    """Requests the gateway holds (nothing ready to take them)."""
    bridge_busy: int
    """Requests on the bridge: being answered or queued at its server."""
    gpu_replicas: int
    """The GPU replicas the operator last asked for."""
    gpu_ready: int
    bridge_replicas: int
    """The bridge's replicas now (0 or 1)."""
    last_request: datetime | None
    episode_start: datetime | None
    """The first request of the current demand episode at zero (None: no episode open)."""


@dataclass(frozen=True)
class BridgePlan:
    bridge_replicas: int
    gpu_demand: int
    """Pending requests to report to decide() for the GPU (0 keeps a GPU at zero asleep)."""
    episode_start: datetime | None
    next_check: datetime | None
    """When the plan may change with nothing else happening."""
    reason: str


def plan_bridge(bridge: ResolvedBridge, view: BridgeView) -> BridgePlan:
    """The bridge's replicas (0 or 1) and the GPU's demand, at view.now."""
    now = view.now
    idle = timedelta(seconds=bridge.idle_timeout_seconds)
    recent = view.last_request is not None and now < view.last_request + idle
    demand = view.held + view.bridge_busy
    checks: list[datetime] = []

    # The episode: from the first request that finds the GPU at zero until the GPU wakes or
    # the bridge has seen no request for the idle timeout.
    episode = view.episode_start
    if view.gpu_replicas > 0 or (episode is not None and demand == 0 and not recent):
        episode = None
    if episode is None and view.gpu_replicas == 0 and demand > 0:
        episode = view.last_request or now

    if view.gpu_replicas > 0:
        gpu_demand = view.held  # the bridge's own requests never keep the GPU awake
        gpu_reason = "GPU awake"
    elif demand == 0:
        gpu_demand, gpu_reason = 0, "no demand"
    elif bridge.gpu_after_seconds is None:
        gpu_demand, gpu_reason = demand, "GPU wakes with the bridge"
    else:
        assert episode is not None
        due = episode + timedelta(seconds=bridge.gpu_after_seconds)
        if now >= due:
            gpu_demand, gpu_reason = demand, "demand lasted gpuAfter: GPU wakes"
        else:
            gpu_demand, gpu_reason = 0, "gpuAfter not passed: GPU stays asleep"
            checks.append(due)

    if view.in_window:
        replicas, reason = 1, "inside a bridge window"
    elif view.gpu_ready > 0:
        replicas = 1 if view.bridge_busy > 0 else 0
        reason = "GPU ready; bridge finishes its requests" if replicas else "GPU ready"
    elif demand > 0 or (episode is not None and recent):
        replicas, reason = 1, "answering while the GPU is not ready"
        if demand == 0 and view.last_request is not None:
            checks.append(view.last_request + idle)
    elif view.bridge_replicas > 0 and view.gpu_replicas > 0:
        replicas, reason = 1, "kept until the waking GPU is ready"
    else:
        replicas, reason = 0, "no demand"
    return BridgePlan(
        replicas,
        gpu_demand,
        episode,
        min((t for t in checks if t > now), default=None),
        f"{reason}; {gpu_reason}",
    )
