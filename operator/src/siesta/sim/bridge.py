"""The CPU bridge in the simulator: its world (a CPU node, its price and start times) and
the spec.bridge the simulated operator decides with.

The decision itself is the operator's (`siesta.policy.bridge`: `bridge_decision` and
`gate_gpu`, docs/bridge.md), called by the engine as the operator calls it, as `decide` is
for the GPU. Here: what the bridge costs and how long it takes, and `with_bridge`, which
puts gpuAfter and windows on the spec (from spec.bridge, or the world's overrides).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from siesta.api.durations import format_duration
from siesta.api.models import BridgeSettings, ModelDeploymentSpec, ScheduleWindow
from siesta.policy import ScheduleError
from siesta.policy.bridge import bridge_windows
from siesta.sim.units import Seconds, to_seconds

# On-demand, Linux, us-east-1, USD per instance-hour. m7i.large is $0.1008 (DoiT, "AWS EC2
# pricing", doit.com/blog/aws-ec2-pricing, read 2026-12-06); sizes of a family are priced in
# proportion to their vCPUs. Set current prices with --bridge-price or the world file.
CPU_INSTANCE_PRICES: dict[str, float] = {
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
    # The documented CPU NodePool's type (deploy/nodegroups/karpenter-cpu-bridge.yaml), at
    # the price the kit's Karpenter world gives it; not checked against a public page here.
    "c7i.2xlarge": 0.357,
}
DEFAULT_CPU_INSTANCE = "m7i.2xlarge"


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
    timezone: str
    windows: list[ScheduleWindow]


class BridgeError(ValueError):
    """A bridge setting that cannot be used."""


def spec_bridge_defaults(spec: ModelDeploymentSpec) -> dict[str, object]:
    """gpuAfter and windows from `spec.bridge`, when the spec has one."""
    if spec.bridge is None:
        return {}
    found: dict[str, object] = {}
    if spec.bridge.gpu_after is not None:
        found["gpu_after"] = to_seconds(spec.bridge.gpu_after)
    if spec.bridge.windows:
        found["windows"] = spec.bridge.windows
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
        timezone=spec.schedule.timezone,
        windows=bridge.windows,
    )
    if resolved.windows:  # fail early on a window that does not compile
        try:
            bridge_windows(resolved.windows, resolved.timezone)
        except ScheduleError as error:
            raise BridgeError(f"bridge window: {error}") from error
    return resolved


def with_bridge(spec: ModelDeploymentSpec, bridge: ResolvedBridge) -> ModelDeploymentSpec:
    """The spec the simulated operator sees: spec.bridge with the world's gpuAfter and
    windows (the rest of spec.bridge, if any, is kept; it does not change the decision)."""
    settings = spec.bridge or BridgeSettings()
    gpu_after = bridge.gpu_after_seconds
    update = {
        "gpu_after": format_duration(timedelta(seconds=gpu_after)) if gpu_after else None,
        "windows": bridge.windows,
    }
    return spec.model_copy(update={"bridge": settings.model_copy(update=update)})
