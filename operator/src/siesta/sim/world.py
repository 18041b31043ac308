"""The simulated world: every assumption the cost simulator makes, stated with its default.

Defaults come from docs/cost-model.md (sources: AWS on-demand prices in us-east-1,
cluster-autoscaler's documented defaults, the NVIDIA GPU Operator's start-up time).
A `--world` YAML file or command-line flags override any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from siesta.api.loader import describe_validation_error
from siesta.api.models import ModelDeploymentSpec
from siesta.api.prices import DEFAULT_REGION, GPU_ON_DEMAND
from siesta.sim.bridge import BridgeWorld, ResolvedBridge, resolve_bridge, spec_bridge_defaults
from siesta.sim.units import Seconds

# The GPU types the simulator provisions, at the shared table's us-east-1 on-demand prices
# (siesta.api.prices; set current prices with --world).
INSTANCE_PRICES: dict[str, float] = {
    instance: GPU_ON_DEMAND[DEFAULT_REGION][instance]
    for instance in ("g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g5.2xlarge")
}

# From the node request to a node that advertises nvidia.com/gpu: EC2 launch and kubelet
# join (about a minute) plus the GPU Operator's driver, toolkit and device plugin (1.5 to 5
# minutes after boot). 180 s sits at the quick end of that range.
NODE_PROVISION_SECONDS: dict[str, float] = {
    "g4dn.xlarge": 180.0,
    "g4dn.2xlarge": 180.0,
    "g5.xlarge": 180.0,
    "g5.2xlarge": 180.0,
}
DEFAULT_NODE_PROVISION_SECONDS = 180.0

# The smallest instance that carries each nvidia.com/gpu.product (lower-case).
PRODUCT_INSTANCE: dict[str, str] = {
    "tesla-t4": "g4dn.xlarge",
    "nvidia-a10g": "g5.xlarge",
}
DEFAULT_INSTANCE = "g4dn.xlarge"

# Karpenter removes an empty node `consolidateAfter` after its last pod left, plus its
# disruption loop's own time: it looks every 10 s (5 s on average) and re-validates an
# emptiness decision for 15 s before deleting the NodeClaim (sigs.k8s.io/karpenter
# pkg/controllers/disruption); tests/e2e/test_karpenter.py measures it.
KARPENTER_CONSOLIDATION_LATENCY_SECONDS = 20.0
KARPENTER_CONSOLIDATE_AFTER_SECONDS = 60.0  # deploy/nodegroups/karpenter-gpu.yaml, gpu-t4
AUTOSCALERS = ("cluster-autoscaler", "karpenter")


class WorldError(ValueError):
    """A world file or override that cannot be used; str() names the field."""


class World(BaseModel):
    """The model of the world a trace is replayed in. Times are in seconds."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    instance_type: str | None = Field(
        default=None,
        description="GPU instance type; default: the cheapest for spec.gpu.products.",
    )
    price_per_hour: float | None = Field(
        default=None, gt=0, description="USD per instance-hour; default: INSTANCE_PRICES."
    )
    node_provision_seconds: Seconds | None = Field(
        default=None,
        description="Node request -> node ready with nvidia.com/gpu (default 180 s).",
    )
    node_provision_jitter_seconds: Seconds = Field(
        default=0.0,
        description="Each node takes up to this much longer, drawn uniformly from the seeded RNG.",
    )
    model_load_seconds: Seconds = Field(
        default=60.0,
        description="Pod placed on a ready node -> /health 200 (image start, cached GGUF load).",
    )
    autoscaler: Literal["cluster-autoscaler", "karpenter"] = Field(
        default="cluster-autoscaler",
        description="Who removes empty nodes: cluster-autoscaler (nodeUnneededSeconds, "
        "scaleDownDelayAfterAddSeconds) or Karpenter (consolidateAfterSeconds).",
    )
    node_unneeded_seconds: Seconds = Field(
        default=600.0,
        description="cluster-autoscaler scale-down-unneeded-time: an empty node lives this long.",
    )
    scale_down_delay_after_add_seconds: Seconds = Field(
        default=600.0,
        description="cluster-autoscaler scale-down-delay-after-add: no removal soon after an add",
    )
    consolidate_after_seconds: Seconds = Field(
        default=KARPENTER_CONSOLIDATE_AFTER_SECONDS,
        description="Karpenter NodePool consolidateAfter (with autoscaler: karpenter).",
    )
    consolidation_latency_seconds: Seconds = Field(
        default=KARPENTER_CONSOLIDATION_LATENCY_SECONDS,
        description="Karpenter: consolidateAfter -> node deleted (polling and validation).",
    )
    metric_interval_seconds: Seconds = Field(
        default=30.0,
        description="Load is queried this often while there are replicas (SIESTA_METRIC_INTERVAL)",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests one replica serves at once; default: spec.server.parallel.",
    )
    default_request_seconds: Seconds = Field(
        default=5.0,
        description="Service time of a trace line that gives neither duration nor tokens.",
    )
    tokens_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Generation speed of one sequence, for trace lines that give tokens.",
    )
    gateway_queue_size: int = Field(
        default=100,
        ge=0,
        description="Requests the gateway holds per model (SIESTA_GATEWAY_QUEUE_SIZE).",
    )
    wake_timeout_seconds: Seconds | None = Field(
        default=None,
        description="How long a held request waits; default: spec.scaling.wakeTimeout.",
    )
    first_token_seconds: Seconds = Field(
        default=0.3,
        description="A request taken by a GPU replica -> its first token (prompt processing).",
    )
    bridge: BridgeWorld = Field(
        default_factory=BridgeWorld,
        description="The CPU bridge's node and times (used by the siesta+bridge policy).",
    )

    def resolve_bridge(self, spec: ModelDeploymentSpec) -> ResolvedBridge:
        """The bridge for `spec`: spec.bridge's gpuAfter and windows unless the world sets them."""
        settings = self.bridge
        defaults = {
            key: value
            for key, value in spec_bridge_defaults(spec).items()
            if key not in settings.model_fields_set
        }
        if defaults:
            settings = settings.model_copy(update=defaults)
        return resolve_bridge(settings, spec)

    def resolve(self, spec: ModelDeploymentSpec) -> ResolvedWorld:
        instance = self.instance_type or instance_for(spec)
        price = self.price_per_hour
        if price is None:
            if instance not in INSTANCE_PRICES:
                known = ", ".join(sorted(INSTANCE_PRICES))
                raise WorldError(
                    f"no price known for {instance!r} (known: {known}); set pricePerHour"
                )
            price = INSTANCE_PRICES[instance]
        provision = self.node_provision_seconds
        if provision is None:
            provision = NODE_PROVISION_SECONDS.get(instance, DEFAULT_NODE_PROVISION_SECONDS)
        wake = self.wake_timeout_seconds
        if wake is None:
            wake = spec.scaling.wake_timeout_delta.total_seconds()
        unneeded, after_add = self.node_unneeded_seconds, self.scale_down_delay_after_add_seconds
        if self.autoscaler == "karpenter":
            # Each node is judged on its own: no cluster-wide pause after an added node.
            unneeded = self.consolidate_after_seconds + self.consolidation_latency_seconds
            after_add = 0.0
        return ResolvedWorld(
            autoscaler=self.autoscaler,
            instance_type=instance,
            price_per_hour=price,
            node_provision_seconds=provision,
            node_provision_jitter_seconds=self.node_provision_jitter_seconds,
            model_load_seconds=self.model_load_seconds,
            node_unneeded_seconds=unneeded,
            scale_down_delay_after_add_seconds=after_add,
            metric_interval_seconds=max(self.metric_interval_seconds, 1.0),
            concurrency=self.concurrency or spec.server.parallel,
            default_request_seconds=self.default_request_seconds,
            tokens_per_second=self.tokens_per_second,
            gateway_queue_size=self.gateway_queue_size,
            wake_timeout_seconds=wake,
            first_token_seconds=self.first_token_seconds,
        )


class ResolvedWorld(BaseModel):
    """A World with every default filled in for one spec (what the report prints)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    autoscaler: str
    instance_type: str
    price_per_hour: float
    node_provision_seconds: float
    node_provision_jitter_seconds: float
    model_load_seconds: float
    node_unneeded_seconds: float
    scale_down_delay_after_add_seconds: float
    metric_interval_seconds: float
    concurrency: int
    default_request_seconds: float
    tokens_per_second: float
    gateway_queue_size: int
    wake_timeout_seconds: float
    first_token_seconds: float = 0.3


def instance_for(spec: ModelDeploymentSpec) -> str:
    """The cheapest known instance type whose GPU the spec accepts."""
    for product in spec.gpu.products:
        instance = PRODUCT_INSTANCE.get(product.lower())
        if instance is not None:
            return instance
    return DEFAULT_INSTANCE


def load_world(path: Path | None, overrides: dict[str, object] | None = None) -> World:
    """A World from a YAML file (camelCase or snake_case keys) plus overrides (snake_case)."""
    data: dict[str, object] = {}
    source = str(path) if path else "world"
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as error:
            raise WorldError(f"{path}: cannot read: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise WorldError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from error
        if loaded is not None and not isinstance(loaded, dict):
            raise WorldError(f"{path}: expected a mapping of world settings")
        data = {to_camel(str(key)): value for key, value in (loaded or {}).items()}
    for key, value in (overrides or {}).items():
        if key == "bridge" and isinstance(value, dict):
            # Bridge overrides (snake_case) go over the file's `bridge:` keys one by one.
            merged = dict(data.get("bridge") or {})  # type: ignore[call-overload]
            merged.update({to_camel(k): v for k, v in value.items() if v is not None})
            data["bridge"] = merged
        elif value is not None:
            data[to_camel(key)] = value
    try:
        return World.model_validate(data)
    except ValidationError as error:
        raise WorldError(f"{source}: {describe_validation_error(error)}") from error
    except ValueError as error:  # a duration that does not parse
        raise WorldError(f"{source}: {error}") from error
