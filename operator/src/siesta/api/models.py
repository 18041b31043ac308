"""The ModelDeployment API (siesta.dev/v1alpha1) as pydantic models.

These models are the single source of truth: the CRD in crds/, the API reference in docs/
and the validation of example files are all generated from them. Field names are the
camelCase names users write in YAML; Python code uses snake_case attributes.
CEL rules live next to the fields they guard, under `x-kubernetes-validations`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from siesta.api.contract import (
    API_VERSION,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_TARGET_PER_REPLICA,
    DEFAULT_WAKE_TIMEOUT,
    KIND,
)
from siesta.api.durations import DURATION_PATTERN, parse_duration

if TYPE_CHECKING:
    ApiVersionField = str
    KindField = str
else:  # the exact values, checked when a file is validated (spelled once, in the contract)
    ApiVersionField = Literal[API_VERSION]
    KindField = Literal[KIND]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Five cron fields (croniter syntax), or one of the usual @-macros.
CRON_PATTERN = (
    r"^([0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4}"
    r"|@(yearly|annually|monthly|weekly|daily|midnight|hourly))$"
)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _positive_duration(field: str) -> dict[str, Any]:
    return cel(
        f"!has(self.{field}) || duration(self.{field}) > duration('0s')",
        f"{field} must be a positive duration such as 30s, 15m or 1h",
        f".{field}",
    )


Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    Field(description="Duration such as 90s, 15m or 1h30m."),
]
Quantity = Annotated[
    int | str,
    Field(
        description="Kubernetes resource quantity, for example 20Gi.", union_mode="left_to_right"
    ),
]
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]


class ApiModel(BaseModel):
    """Base: camelCase in YAML, unknown fields rejected when files are validated locally."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ModelSource(ApiModel):
    uri: Annotated[str, StringConstraints(max_length=2048)] = Field(
        description=(
            "Where the GGUF file comes from: https:// or http:// (downloaded once into the "
            "cache volume), file:// or an absolute path inside the image, or pvc://CLAIM/PATH "
            "(mounted read-only from an existing PersistentVolumeClaim)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.matches('^(https?|file|pvc)://.+$') || self.startsWith('/')",
                    "uri must start with https://, http://, file://, pvc:// or /",
                )
            ]
        },
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not (re.match(r"^(https?|file|pvc)://.+$", uri) or uri.startswith("/")):
            raise ValueError("uri must start with https://, http://, file://, pvc:// or /")
        return uri

    sha256: Annotated[str, StringConstraints(pattern=r"^[a-fA-F0-9]{64}$")] | None = Field(
        default=None, description="Expected SHA-256 of the file, checked after download."
    )
    alias: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=128)]
        | None
    ) = Field(
        default=None,
        description="The OpenAI `model` name clients use. Defaults to metadata.name.",
    )


class ResourceRequirements(ApiModel):
    requests: dict[str, Quantity] | None = Field(default=None, description="CPU/memory requests.")
    limits: dict[str, Quantity] | None = Field(default=None, description="CPU/memory limits.")


class ServerSettings(ApiModel):
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Model server image. Defaults to the operator's setting."
    )
    context_size: int = Field(
        default=4096, ge=128, le=1048576, description="Context window in tokens (llama.cpp -c)."
    )
    parallel: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Concurrent sequences (slots) per replica (llama.cpp -np).",
    )
    gpu_layers: int = Field(
        default=-1, ge=-1, le=1000, description="Layers offloaded to the GPU; -1 = all."
    )
    extra_args: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list,
        max_length=32,
        description="Extra command-line arguments for the server.",
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="CPU and memory for the server container. The GPU comes from spec.gpu.",
    )


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class GpuSettings(ApiModel):
    count: int = Field(
        default=1, ge=0, le=16, description="nvidia.com/gpu per replica; 0 = CPU-only model."
    )
    products: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Accepted nvidia.com/gpu.product values, any of (e.g. Tesla-T4, NVIDIA-A10G). "
            "Matched without regard to case. Empty = any GPU."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node labels to require."
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=16,
        description="Pod tolerations. Default (unset): tolerate nvidia.com/gpu:NoSchedule when count > 0.",
    )


class CacheSettings(ApiModel):
    size: Quantity = Field(default="20Gi", description="Size of each replica's model-cache volume.")
    storage_class_name: str | None = Field(
        default=None, description="StorageClass for the cache volume."
    )
    when_scaled: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description=(
            "What happens to a replica's cache volume when it is scaled away. Retain keeps the "
            "download (faster wake-up) but a zonal volume pins the next pod to its zone; Delete "
            "lets the pod land in any zone at the cost of a new download."
        ),
    )


class ReplicaBounds(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    # has(): the API server also checks the section's default ({}) against it.
                    "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "replicas.min must be <= replicas.max",
                )
            ]
        }
    )
    min: int = Field(
        default=0, ge=0, le=1000, description="Replicas kept at all times (0 allows scale to zero)."
    )
    max: int = Field(default=1, ge=1, le=1000, description="Upper bound for every rule.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError("replicas.min must be <= replicas.max")
        return self


class ScheduleWindow(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.end) != has(self.duration)",
                    "a window needs exactly one of end or duration",
                ),
                _positive_duration("duration"),
            ]
        }
    )
    name: DnsLabel = Field(description="Window name (a DNS label), shown in reasons.")
    start: Annotated[str, StringConstraints(max_length=100)] = Field(
        description="Cron expression (5 fields, in schedule.timezone) at which the window opens.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.matches('{CRON_PATTERN}')",
                    "start must be a 5-field cron expression such as '0 8 * * 1-5'",
                )
            ]
        },
    )
    end: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None,
        description="Cron expression at which the window closes (the first match after start).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.matches('{CRON_PATTERN}')",
                    "end must be a 5-field cron expression such as '0 18 * * 1-5'",
                )
            ]
        },
    )
    duration: Duration | None = Field(
        default=None, description="Window length in wall-clock time, instead of end."
    )
    min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Replicas kept while the window is open."
    )

    @model_validator(mode="after")
    def _one_end(self) -> ScheduleWindow:
        if (self.end is None) == (self.duration is None):
            raise ValueError("a window needs exactly one of end or duration")
        if self.duration is not None and parse_duration(self.duration).total_seconds() <= 0:
            raise ValueError("duration must be a positive duration such as 30s, 15m or 1h")
        for label, expression in (("start", self.start), ("end", self.end)):
            if expression is not None and not re.fullmatch(CRON_PATTERN, expression):
                raise ValueError(f"{label} must be a 5-field cron expression such as '0 8 * * 1-5'")
        return self

    @property
    def duration_delta(self) -> timedelta | None:
        return parse_duration(self.duration) if self.duration else None


class Schedule(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _positive_duration("prewarm"),
                cel(
                    "!has(self.windows) || self.windows.all(a, self.windows.exists_one(b, a.name == b.name))",
                    "window names must be unique",
                ),
            ]
        }
    )
    timezone: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="UTC", description="IANA time zone for every cron expression, e.g. Europe/Berlin."
    )
    prewarm: Duration | None = Field(default=None, description="Open every window this much early.")
    windows: list[ScheduleWindow] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _unique_names(self) -> Schedule:
        names = [window.name for window in self.windows]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"window names must be unique (repeated: {', '.join(duplicates)})")
        return self

    @property
    def prewarm_delta(self) -> timedelta:
        return parse_duration(self.prewarm) if self.prewarm else timedelta(0)


class MetricSource(ApiModel):
    query: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description=(
            "PromQL returning one number: the load on this model. $namespace and $name are "
            "substituted. Default: requests processing + deferred on this model's servers."
        ),
    )
    target_per_replica: float = Field(
        default=DEFAULT_TARGET_PER_REPLICA,
        gt=0,
        description="Load one replica should carry; desired = ceil(load / target).",
    )
    prometheus_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://.+", max_length=512)] | None
    ) = Field(default=None, description="Prometheus to query. Defaults to the operator's setting.")


class Scaling(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _positive_duration("idleTimeout"),
                _positive_duration("wakeTimeout"),
                _positive_duration("overrideDuration"),
            ]
        }
    )
    idle_timeout: Duration | None = Field(
        default=None,
        description=(
            "No load and no requests for this long (outside windows) -> scale to zero. "
            f"Default: the operator's setting ({DEFAULT_IDLE_TIMEOUT} unless changed)."
        ),
    )
    scale_down_delay: Duration = Field(
        default="5m", description="A lower answer must hold this long before replicas go down."
    )
    metric: MetricSource | None = Field(
        default=None, description="Load-based scaling; unset = default query."
    )
    wake_timeout: Duration = Field(
        default=DEFAULT_WAKE_TIMEOUT,
        description="How long the gateway holds requests while the model wakes up.",
    )
    override_duration: Duration = Field(
        default="1h",
        description=(
            "How long `kubectl scale` pins replicas when no schedule boundary comes sooner."
        ),
    )

    @model_validator(mode="after")
    def _positive(self) -> Scaling:
        for name in ("idle_timeout", "wake_timeout", "override_duration"):
            value = getattr(self, name)
            if value is not None and parse_duration(value).total_seconds() <= 0:
                raise ValueError(
                    f"{to_camel(name)} must be a positive duration such as 30s, 15m or 1h"
                )
        return self

    @property
    def idle_timeout_delta(self) -> timedelta:
        return parse_duration(self.idle_timeout or DEFAULT_IDLE_TIMEOUT)

    @property
    def scale_down_delay_delta(self) -> timedelta:
        return parse_duration(self.scale_down_delay)

    @property
    def wake_timeout_delta(self) -> timedelta:
        return parse_duration(self.wake_timeout)

    @property
    def override_duration_delta(self) -> timedelta:
        return parse_duration(self.override_duration)


class ModelDeploymentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.schedule) || !has(self.schedule.windows) || "
                    "self.schedule.windows.all(w, !has(w.minReplicas) || w.minReplicas <= self.replicas.max)",
                    "a window's minReplicas must be <= replicas.max",
                ),
            ]
        }
    )
    model: ModelSource
    server: ServerSettings = Field(default_factory=ServerSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    schedule: Schedule = Field(default_factory=Schedule)
    scaling: Scaling = Field(default_factory=Scaling)
    paused: bool = Field(default=False, description="Freeze replicas where they are.")

    @model_validator(mode="after")
    def _windows_within_max(self) -> ModelDeploymentSpec:
        for window in self.schedule.windows:
            if window.min_replicas > self.replicas.max:
                raise ValueError(
                    f"window {window.name!r}: minReplicas {window.min_replicas} is above replicas.max {self.replicas.max}"
                )
        return self

    manual_replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Written by `kubectl scale md/NAME --replicas=N`; keep it out of Git. Pins N replicas "
            "(capped at replicas.max) until the next schedule boundary or scaling.overrideDuration, "
            "then the operator clears it."
        ),
    )


class Phase(StrEnum):
    SCALED_TO_ZERO = "ScaledToZero"
    WAITING_FOR_GPU = "WaitingForGPU"
    LOADING = "Loading"
    READY = "Ready"
    SCALING = "Scaling"
    PAUSED = "Paused"
    DEGRADED = "Degraded"


class Condition(ApiModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None


class NextTransition(ApiModel):
    time: str
    replicas: int
    reason: str


class ColdStart(ApiModel):
    last_seconds: float | None = None
    pending_seconds: float | None = None
    loading_seconds: float | None = None
    started_at: str | None = None


class ManualOverride(ApiModel):
    replicas: int
    since: str
    until: str


class ModelDeploymentStatus(ApiModel):
    model_config = ConfigDict(extra="ignore")
    phase: Phase | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    reason: str | None = Field(
        default=None, description="The first of reasons (for the printer column)."
    )
    reasons: list[str] = Field(default_factory=list)
    last_active_time: str | None = None
    scale_down_since: str | None = Field(
        default=None, description="Since when a lower answer has held."
    )
    last_scale_time: str | None = None
    next_transition: NextTransition | None = None
    cold_start: ColdStart | None = None
    manual_override: ManualOverride | None = None
    selector: str | None = Field(
        default=None, description="Pod label selector (for the scale subresource)."
    )
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class ModelDeployment(BaseModel):
    """A whole object as users write it (apiVersion, kind, metadata, spec)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    api_version: ApiVersionField = Field(alias="apiVersion")
    kind: KindField
    metadata: dict[str, Any]
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))

    @property
    def alias(self) -> str:
        return self.spec.model.alias or self.name
