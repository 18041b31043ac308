"""The ModelDeployment API (siesta.dev/v1alpha1) as pydantic models.

These models are the single source of truth: the CRD in crds/, the API reference in docs/
and the validation of example files are all generated from them. Field names are the
camelCase names users write in YAML; Python code uses snake_case attributes.
CEL rules live next to the fields they guard, under `x-kubernetes-validations`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
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
    REQUIRE_GPU_ENV,
    bridge_name,
)
from siesta.api.durations import DURATION_PATTERN, parse_duration

if TYPE_CHECKING:
    ApiVersionField = str
    KindField = str
else:  # the exact values, checked when a file is validated (spelled once, in the contract)
    ApiVersionField = Literal[API_VERSION]
    KindField = Literal[KIND]

BRIDGE_SUFFIX = bridge_name("")
"""What a model's CPU bridge adds to its name; no model may be named so (a CEL rule)."""
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


# Model URIs. The server parses them again (siesta_server.source); these say early, in
# `kubectl apply`, what a malformed one looks like.
URI_SCHEMES_PATTERN = r"^(https?|file|pvc|s3|hf)://.+$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.*[^/]$"
HF_URI_PATTERN = r"^hf://[^/@]+/[^/@]+/[^@]*[^/@](@[^@]+)?$"
URI_RULES: list[tuple[str, str, str]] = [
    # (CEL, message, the same check in Python as a regex over the URI)
    (
        f"self.matches('{URI_SCHEMES_PATTERN}') || self.startsWith('/')",
        "uri must start with https://, http://, s3://, hf://, file://, pvc:// or /",
        r"^((https?|file|pvc|s3|hf)://.+|/.*)$",
    ),
    (
        f"!self.startsWith('s3://') || self.matches('{S3_URI_PATTERN}')",
        "an s3 uri is s3://BUCKET/KEY (a lower-case bucket name and an object key)",
        rf"^(?!s3://)|{S3_URI_PATTERN}",
    ),
    (
        f"!self.startsWith('hf://') || self.matches('{HF_URI_PATTERN}')",
        "an hf uri is hf://ORG/REPO/FILE.gguf, optionally @REVISION (pin a commit hash)",
        rf"^(?!hf://)|{HF_URI_PATTERN}",
    ),
]


class ModelSource(ApiModel):
    uri: Annotated[str, StringConstraints(max_length=2048)] = Field(
        description=(
            "Where the GGUF file comes from, downloaded once into the cache volume: "
            "https:// or http://; s3://BUCKET/KEY (credentials from the pod's ServiceAccount "
            "role (IRSA or EKS Pod Identity) or AWS_* variables in spec.pod.env; "
            "AWS_ENDPOINT_URL_S3 for an S3-compatible store); hf://ORG/REPO/FILE.gguf[@REVISION] "
            "(Hugging Face; HF_TOKEN from a Secret in spec.pod.env for a private repository). "
            "Or used in place: file:// or an absolute path inside the image, or "
            "pvc://CLAIM/PATH (mounted read-only from an existing PersistentVolumeClaim)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [cel(rule, message) for rule, message, _ in URI_RULES]
        },
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        for _, message, pattern in URI_RULES:
            if not re.match(pattern, uri):
                raise ValueError(message)
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


MAX_ADAPTERS = 32


class LoraAdapter(ApiModel):
    """A fine-tune of spec.model as a LoRA adapter, served by the same pods under its own name."""

    name: DnsLabel = Field(
        description=(
            "The OpenAI `model` name of this fine-tune (a DNS label). Like aliases, unique "
            "across the gateway: the gateway routes it to this model's pods."
        )
    )
    uri: Annotated[str, StringConstraints(max_length=2048)] = Field(
        description=(
            "Where the LoRA adapter GGUF comes from (general.type=adapter, converted against "
            "spec.model); the same schemes as spec.model.uri."
        ),
        json_schema_extra=ModelSource.model_fields["uri"].json_schema_extra,
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[a-fA-F0-9]{64}$")] | None = Field(
        default=None, description="Expected SHA-256 of the adapter file, checked after download."
    )
    scale: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="How strongly the adapter applies (llama.cpp's LoRA scale; 1 = as trained).",
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        ModelSource.model_validate({"uri": uri})  # one rule for model and adapter URIs
        return uri


class ResourceRequirements(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(!has(self.limits) || !('nvidia.com/gpu' in self.limits)) && "
                    "(!has(self.requests) || !('nvidia.com/gpu' in self.requests))",
                    "nvidia.com/gpu comes from spec.gpu.count, not server.resources",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _no_gpu(self) -> ResourceRequirements:
        if "nvidia.com/gpu" in (self.limits or {}) or "nvidia.com/gpu" in (self.requests or {}):
            raise ValueError("nvidia.com/gpu comes from spec.gpu.count, not server.resources")
        return self

    requests: dict[str, Quantity] | None = Field(default=None, description="CPU/memory requests.")
    limits: dict[str, Quantity] | None = Field(default=None, description="CPU/memory limits.")


class ServerSettings(ApiModel):
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None,
        description=(
            "Model server image. Default: the operator's CUDA image when gpu.count > 0, its "
            "CPU image otherwise."
        ),
    )
    context_size: int = Field(
        default=4096,
        ge=128,
        le=1048576,
        description=(
            "Context window in tokens of a replica (llama.cpp -c), shared by its parallel "
            "slots: one conversation gets contextSize / parallel tokens."
        ),
    )
    parallel: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Concurrent sequences (slots) per replica (llama.cpp -np). The context window is "
            "split over them: each conversation gets contextSize / parallel tokens (4096 over "
            "4 slots: 1024 tokens each)."
        ),
    )
    gpu_layers: int = Field(
        default=-1, ge=-1, le=1000, description="Layers offloaded to the GPU; -1 = all."
    )
    extra_args: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Extra siesta-server flags (see docs/server.md), e.g. --threads 8 or --log-level "
            "debug. Not llama.cpp's llama-server flags: an unknown flag stops the server "
            "(exit code 2) with a message listing the valid ones."
        ),
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


DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


class Holidays(ApiModel):
    """Closed days: no window opens (and none prewarms) on them. Demand and load still wake."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.subdivision) || has(self.country)",
                    "holidays.subdivision needs holidays.country",
                ),
            ]
        }
    )
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None,
        description=(
            "ISO 3166-1 alpha-2 country whose public holidays close the schedule, e.g. DE "
            "(as the Python `holidays` package knows them)."
        ),
    )
    subdivision: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")] | None = Field(
        default=None,
        description="ISO 3166-2 subdivision code without the country, e.g. BE for Berlin.",
    )
    dates: list[Annotated[str, StringConstraints(pattern=DATE_PATTERN, max_length=10)]] = Field(
        default_factory=list,
        max_length=366,
        description="Extra closed days, YYYY-MM-DD (company holidays, bridge days).",
    )

    @model_validator(mode="after")
    def _known(self) -> Holidays:
        if self.subdivision and not self.country:
            raise ValueError("holidays.subdivision needs holidays.country")
        for value in self.dates:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"holidays.dates: {value} is not a date (YYYY-MM-DD)") from None
        return self


class LearnedPrewarm(ApiModel):
    """Wake the model before a first request that recurs (docs/concepts.md, "Prewarm from history")."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_positive_duration("lead")]}
    )
    enabled: bool = Field(default=False, description="Off by default.")
    lead: Duration = Field(
        default="10m", description="How long before the recurring quarter-hour to wake it."
    )

    @property
    def lead_delta(self) -> timedelta:
        return parse_duration(self.lead)


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
    holidays: Holidays | None = Field(
        default=None,
        description=(
            "Days on which no window opens, by the calendar day in timezone. A window "
            "already open from the day before runs to its end."
        ),
    )
    learned_prewarm: LearnedPrewarm | None = Field(
        default=None,
        description=(
            "Prewarm from history: a quarter-hour in which the first request after a quiet "
            "hour came on most days wakes the model `lead` before it."
        ),
    )

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


AUTO = "auto"
IdleTimeout = Annotated[
    str,
    StringConstraints(pattern=rf"^({AUTO}|{DURATION_PATTERN[1:-1]})$", max_length=32),
    Field(description="Duration such as 90s, 15m or 1h30m, or `auto`."),
]


class AutoIdleTimeout(ApiModel):
    """How `idleTimeout: auto` learns (docs/concepts.md, "A learned idle timeout")."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _positive_duration("min"),
                _positive_duration("max"),
                _positive_duration("wakeCost"),
                cel(
                    "!has(self.min) || !has(self.max) || duration(self.min) <= duration(self.max)",
                    "autoIdleTimeout.min must not exceed autoIdleTimeout.max",
                ),
            ]
        }
    )
    min: Duration = Field(default="2m", description="The shortest learned idle timeout.")
    max: Duration = Field(
        default="30m",
        description="The longest learned idle timeout; also the timeout while it learns.",
    )
    wake_cost: Duration = Field(
        default="10m",
        description=(
            "How much idle GPU time one avoided wake is worth (node boot, model load, the "
            "wait users see). Larger keeps models warm longer between requests."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoIdleTimeout:
        for name in ("min", "max", "wake_cost"):
            if parse_duration(getattr(self, name)).total_seconds() <= 0:
                raise ValueError(f"autoIdleTimeout.{to_camel(name)} must be a positive duration")
        if self.min_delta > self.max_delta:
            raise ValueError("autoIdleTimeout.min must not exceed autoIdleTimeout.max")
        return self

    @property
    def min_delta(self) -> timedelta:
        return parse_duration(self.min)

    @property
    def max_delta(self) -> timedelta:
        return parse_duration(self.max)

    @property
    def wake_cost_delta(self) -> timedelta:
        return parse_duration(self.wake_cost)


class Scaling(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"!has(self.idleTimeout) || self.idleTimeout == '{AUTO}' || "
                    "duration(self.idleTimeout) > duration('0s')",
                    "idleTimeout must be auto or a positive duration such as 30s, 15m or 1h",
                    ".idleTimeout",
                ),
                cel(
                    f"!has(self.autoIdleTimeout) || "
                    f"(has(self.idleTimeout) && self.idleTimeout == '{AUTO}')",
                    "autoIdleTimeout needs idleTimeout: auto",
                    ".autoIdleTimeout",
                ),
                _positive_duration("wakeTimeout"),
                _positive_duration("overrideDuration"),
                _positive_duration("startupTimeout"),
            ]
        }
    )
    idle_timeout: IdleTimeout | None = Field(
        default=None,
        description=(
            "No load and no requests for this long (outside windows) -> scale to zero. "
            "`auto`: learned from the gaps between this model's requests, within "
            "autoIdleTimeout. "
            f"Default: the operator's setting ({DEFAULT_IDLE_TIMEOUT} unless changed)."
        ),
    )
    auto_idle_timeout: AutoIdleTimeout | None = Field(
        default=None,
        description="Bounds and wake cost for idleTimeout: auto (defaults 2m, 30m, 10m).",
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
    max_held_requests: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "At most this many requests held per gateway replica while the model wakes up; "
            "more get 503 `model_busy` with Retry-After at once. Default: the gateway's "
            "setting (100 unless changed)."
        ),
    )
    override_duration: Duration = Field(
        default="1h",
        description=(
            "How long `kubectl scale` pins replicas when no schedule boundary comes sooner."
        ),
    )
    startup_timeout: Duration = Field(
        default="30m",
        description=(
            "How long a replica may be Pending or loading (GPU node provisioning, image pull, "
            "model download and load) and still hold a scale-down; after that it counts as "
            "failing."
        ),
    )

    @model_validator(mode="after")
    def _positive(self) -> Scaling:
        for name in ("idle_timeout", "wake_timeout", "override_duration", "startup_timeout"):
            value = getattr(self, name)
            if value is not None and value != AUTO and parse_duration(value).total_seconds() <= 0:
                raise ValueError(
                    f"{to_camel(name)} must be a positive duration such as 30s, 15m or 1h"
                )
        if self.auto_idle_timeout is not None and not self.idle_timeout_auto:
            raise ValueError("autoIdleTimeout needs idleTimeout: auto")
        return self

    @property
    def idle_timeout_auto(self) -> bool:
        return self.idle_timeout == AUTO

    @property
    def auto_idle_timeout_settings(self) -> AutoIdleTimeout:
        return self.auto_idle_timeout or AutoIdleTimeout()

    @property
    def idle_timeout_delta(self) -> timedelta:
        """The fixed idle timeout; for `auto`, the longest it may learn (its upper bound)."""
        if self.idle_timeout_auto:
            return self.auto_idle_timeout_settings.max_delta
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

    @property
    def startup_timeout_delta(self) -> timedelta:
        return parse_duration(self.startup_timeout)


# What Siesta sets on every model pod; spec.pod may add to it but never change it.
OWNED_ENV = (
    "SIESTA_MODEL",
    "SIESTA_SHA256",
    "SIESTA_ALIAS",
    "SIESTA_HOST",
    "SIESTA_PORT",
    "SIESTA_METRICS_PORT",
    "SIESTA_CTX_SIZE",
    "SIESTA_PARALLEL",
    "SIESTA_GPU_LAYERS",
    "SIESTA_CACHE_DIR",
    "SIESTA_DRAIN_TIMEOUT",
    REQUIRE_GPU_ENV,
)
OWNED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
OWNED_ANNOTATIONS = ("cluster-autoscaler.kubernetes.io/safe-to-evict",)
OWNED_KEY_PREFIX = "siesta.dev/"
OWNED_VOLUMES = ("tmp", "model-cache", "model-source")
OWNED_MOUNT_PATHS = ("/tmp", "/models", "/model-source")
GPU_NODE_LABELS = ("nvidia.com/gpu.present", "nvidia.com/gpu.product")
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values)


class EnvVar(ApiModel):
    """A container environment variable (core/v1 EnvVar)."""

    name: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN, max_length=256)]
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef (core/v1).",
    )


class EnvFromSource(ApiModel):
    """Every key of a Secret or ConfigMap as variables (core/v1 EnvFromSource)."""

    prefix: Annotated[str, StringConstraints(max_length=256)] | None = None
    secret_ref: dict[str, Any] | None = Field(default=None, description="{name, optional}")
    config_map_ref: dict[str, Any] | None = Field(default=None, description="{name, optional}")


class LocalObjectReference(ApiModel):
    name: Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]


class Volume(BaseModel):
    """A pod volume (core/v1 Volume): a name and one volume source, checked by the API server."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: DnsLabel


class VolumeMount(ApiModel):
    """Where a volume of spec.pod.volumes appears in the server container (core/v1 VolumeMount)."""

    name: DnsLabel
    mount_path: Annotated[str, StringConstraints(pattern=r"^/", max_length=1024)]
    sub_path: Annotated[str, StringConstraints(max_length=1024)] | None = None
    read_only: bool | None = None


def _reserved_path(path: str) -> bool:
    return any(path == owned or path.startswith(owned + "/") for owned in OWNED_MOUNT_PATHS)


class PodSettings(ApiModel):
    """Additions to every model pod. Fields Siesta sets itself are refused, not overridden."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.annotations) || self.annotations.all(k, !k.startsWith('"
                    + OWNED_KEY_PREFIX
                    + f"') && !(k in {_cel_list(OWNED_ANNOTATIONS)}))",
                    f"pod.annotations: {OWNED_KEY_PREFIX}* and {_listed(OWNED_ANNOTATIONS)} are "
                    "set by Siesta",
                    ".annotations",
                ),
                cel(
                    "!has(self.labels) || self.labels.all(k, !k.startsWith('"
                    + OWNED_KEY_PREFIX
                    + f"') && !(k in {_cel_list(OWNED_LABELS)}))",
                    f"pod.labels: {OWNED_KEY_PREFIX}* and {_listed(OWNED_LABELS)} are set by "
                    "Siesta (the Services select pods by them)",
                    ".labels",
                ),
                cel(
                    f"!has(self.env) || self.env.all(e, !(e.name in {_cel_list(OWNED_ENV)}))",
                    f"pod.env: {_listed(OWNED_ENV)} are set by Siesta from the spec "
                    "(use model, server and gpu)",
                    ".env",
                ),
                cel(
                    "!has(self.env) || self.env.all(a, self.env.exists_one(b, a.name == b.name))",
                    "pod.env: each name at most once",
                    ".env",
                ),
                cel(
                    "!has(self.nodeSelector) || self.nodeSelector.all(k, !(k in "
                    f"{_cel_list(GPU_NODE_LABELS)}))",
                    f"pod.nodeSelector: {_listed(GPU_NODE_LABELS)} come from spec.gpu "
                    "(count, products)",
                    ".nodeSelector",
                ),
                cel(
                    f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_cel_list(OWNED_VOLUMES)}))",
                    f"pod.volumes: the names {_listed(OWNED_VOLUMES)} are Siesta's",
                    ".volumes",
                ),
                cel(
                    "!has(self.volumes) || self.volumes.all(a, self.volumes.exists_one(b, "
                    "a.name == b.name))",
                    "pod.volumes: each name at most once",
                    ".volumes",
                ),
                cel(
                    "!has(self.volumeMounts) || self.volumeMounts.all(m, "
                    + " && ".join(
                        f"m.mountPath != '{path}' && !m.mountPath.startsWith('{path}/')"
                        for path in OWNED_MOUNT_PATHS
                    )
                    + ")",
                    f"pod.volumeMounts: {_listed(OWNED_MOUNT_PATHS)} are Siesta's mounts "
                    "(the model cache and scratch space)",
                    ".volumeMounts",
                ),
                cel(
                    "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                    "self.volumes.exists(v, v.name == m.name))",
                    "pod.volumeMounts: every mount names a volume of pod.volumes",
                    ".volumeMounts",
                ),
            ]
        }
    )
    annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description='Pod annotations, e.g. karpenter.sh/do-not-disrupt: "true".',
    )
    labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=64, description="Pod labels (for policies, cost reports)."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Environment of the server container: HF_TOKEN from a Secret, AWS_REGION, "
            "HTTPS_PROXY, SIESTA_API_KEY, other siesta-server settings (SIESTA_*)."
        ),
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=16, description="Variables from Secrets and ConfigMaps."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16, description="Secrets for a private image registry."
    )
    priority_class_name: (
        Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None
    ) = Field(default=None, description="PriorityClass of the model pods.")
    service_account_name: (
        Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None
    ) = Field(
        default=None,
        description=(
            "ServiceAccount of the model pods: the one an IRSA role or EKS Pod Identity "
            "association gives S3 access. Default: the namespace's default account."
        ),
    )
    automount_service_account_token: bool = Field(
        default=False,
        description=(
            "Mount the Kubernetes API token into the model pods. The server needs none, and "
            "IRSA and EKS Pod Identity mount their own AWS token; turn on only for a webhook "
            "or sidecar that wants it."
        ),
    )
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels to require, added to spec.gpu's (e.g. karpenter.sh/capacity-type).",
    )
    volumes: list[Volume] = Field(
        default_factory=list, max_length=16, description="Extra pod volumes (core/v1 Volume)."
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=16,
        description="Mounts of pod.volumes into the server container.",
    )

    @model_validator(mode="after")
    def _no_conflicts(self) -> PodSettings:
        for key in self.annotations:
            if key.startswith(OWNED_KEY_PREFIX) or key in OWNED_ANNOTATIONS:
                raise ValueError(
                    f"pod.annotations: {OWNED_KEY_PREFIX}* and {_listed(OWNED_ANNOTATIONS)} are "
                    "set by Siesta"
                )
        for key in self.labels:
            if key.startswith(OWNED_KEY_PREFIX) or key in OWNED_LABELS:
                raise ValueError(
                    f"pod.labels: {OWNED_KEY_PREFIX}* and {_listed(OWNED_LABELS)} are set by "
                    "Siesta (the Services select pods by them)"
                )
        names = [variable.name for variable in self.env]
        if owned := sorted(set(names) & set(OWNED_ENV)):
            raise ValueError(f"pod.env: {', '.join(owned)} are set by Siesta from the spec")
        if len(set(names)) != len(names):
            raise ValueError("pod.env: each name at most once")
        if gpu := sorted(set(self.node_selector) & set(GPU_NODE_LABELS)):
            raise ValueError(f"pod.nodeSelector: {', '.join(gpu)} come from spec.gpu")
        volumes = [volume.name for volume in self.volumes]
        if owned := sorted(set(volumes) & set(OWNED_VOLUMES)):
            raise ValueError(f"pod.volumes: the names {', '.join(owned)} are Siesta's")
        if len(set(volumes)) != len(volumes):
            raise ValueError("pod.volumes: each name at most once")
        for mount in self.volume_mounts:
            if _reserved_path(mount.mount_path):
                raise ValueError(
                    f"pod.volumeMounts: {mount.mount_path} is inside Siesta's mounts "
                    f"({_listed(OWNED_MOUNT_PATHS)})"
                )
            if mount.name not in volumes:
                raise ValueError(f"pod.volumeMounts: {mount.name!r} is not a volume of pod.volumes")
        return self


# What a bridge asks for when spec.bridge.resources is unset: a CPU server of a 7-8B Q4 model
# needs its GGUF (~4-5 GiB) in memory plus the KV cache, and answers at a few tokens a second
# on 4 cores. A request, not a limit: the scheduler places it on a node that has that much.
DEFAULT_BRIDGE_REQUESTS: dict[str, int | str] = {"cpu": "4", "memory": "8Gi"}


class BridgeSettings(ApiModel):
    """A CPU replica of the model that answers while its GPU replica wakes (docs/bridge.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _positive_duration("gpuAfter"),
                cel(
                    "!has(self.windows) || self.windows.all(a, self.windows.exists_one(b, "
                    "a.name == b.name))",
                    "bridge window names must be unique",
                ),
                cel(
                    "!has(self.windows) || self.windows.all(w, !has(w.minReplicas) || "
                    "w.minReplicas <= 1)",
                    "a bridge window keeps at most one replica (minReplicas 0 or 1)",
                ),
            ]
        }
    )
    uri: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description=(
            "The GGUF the bridge serves, e.g. a smaller quantization of spec.model (the same "
            "schemes as spec.model.uri). Default: spec.model.uri."
        ),
        json_schema_extra=ModelSource.model_fields["uri"].json_schema_extra,
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[a-fA-F0-9]{64}$")] | None = Field(
        default=None,
        description="Expected SHA-256 of the bridge's file. Default: spec.model.sha256 when "
        "uri is unset.",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads for generation (siesta-server --threads). Default: the server's "
        "choice (the cores it sees).",
    )
    context_size: int | None = Field(
        default=None,
        ge=128,
        le=1048576,
        description="Context window of the bridge in tokens. Default: spec.server.contextSize.",
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description=(
            "CPU and memory of the bridge container. Default: requests cpu 4, memory 8Gi "
            "(a 7-8B Q4 GGUF and its KV cache in memory, a few tokens a second on 4 cores)."
        ),
    )
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels of the CPU pool the bridge runs on (spec.gpu's and spec.pod's "
        "selectors do not apply to it).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=16,
        description="Tolerations for that CPU pool's taints.",
    )
    windows: list[ScheduleWindow] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Windows (cron, in spec.schedule.timezone) in which the bridge is kept at one "
            "replica, e.g. nights: a request is answered at once, without waiting for a pod."
        ),
    )
    gpu_after: Duration | None = Field(
        default=None,
        description=(
            "Unset: a request that finds the model at zero wakes the GPU replica together with "
            "the bridge. Set: the GPU wakes only when requests go on this long after the "
            "bridge began answering them, so a lone question costs no GPU node."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        if uri is not None:
            ModelSource.model_validate({"uri": uri})  # one rule for every URI
        return uri

    @model_validator(mode="after")
    def _windows(self) -> BridgeSettings:
        names = [window.name for window in self.windows]
        if len(set(names)) != len(names):
            raise ValueError("bridge window names must be unique")
        if any(window.min_replicas > 1 for window in self.windows):
            raise ValueError("a bridge window keeps at most one replica (minReplicas 0 or 1)")
        if self.gpu_after is not None and parse_duration(self.gpu_after).total_seconds() <= 0:
            raise ValueError("gpuAfter must be a positive duration such as 30s, 15m or 1h")
        return self

    @property
    def gpu_after_delta(self) -> timedelta | None:
        return parse_duration(self.gpu_after) if self.gpu_after else None


class ModelDeploymentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.schedule) || !has(self.schedule.windows) || "
                    "self.schedule.windows.all(w, !has(w.minReplicas) || w.minReplicas <= self.replicas.max)",
                    "a window's minReplicas must be <= replicas.max",
                ),
                cel(
                    "!has(self.pod) || !has(self.pod.nodeSelector) || !has(self.gpu) || "
                    "!has(self.gpu.nodeSelector) || self.pod.nodeSelector.all(k, "
                    "!(k in self.gpu.nodeSelector) || self.gpu.nodeSelector[k] == "
                    "self.pod.nodeSelector[k])",
                    "pod.nodeSelector and gpu.nodeSelector disagree on a label",
                ),
                cel(
                    "!has(self.adapters) || !has(self.model.alias) || "
                    "self.adapters.all(a, a.name != self.model.alias)",
                    "an adapter cannot be named like the model's alias",
                ),
            ]
        }
    )
    model: ModelSource
    adapters: list[LoraAdapter] = Field(
        default_factory=list,
        max_length=MAX_ADAPTERS,
        description=(
            "LoRA fine-tunes of spec.model, served by the same pods: each request picks one "
            "by `model` name, and requests for different adapters share the GPU and its "
            "batches. Adding or removing one rolls the pods."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(a, self.exists_one(b, a.name == b.name))",
                    "adapter names must be unique",
                )
            ]
        },
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    schedule: Schedule = Field(default_factory=Schedule)
    scaling: Scaling = Field(default_factory=Scaling)
    pod: PodSettings = Field(
        default_factory=PodSettings,
        description="Additions to the model pods: annotations, labels, env, ServiceAccount, ...",
    )
    paused: bool = Field(default=False, description="Freeze replicas where they are.")
    bridge: BridgeSettings | None = Field(
        default=None,
        description=(
            "A CPU replica of the model that answers while the GPU replica wakes and hands "
            "over to it once that is ready (docs/bridge.md). Unset: no bridge."
        ),
    )

    @model_validator(mode="after")
    def _node_selectors_agree(self) -> ModelDeploymentSpec:
        for key, value in self.pod.node_selector.items():
            if self.gpu.node_selector.get(key, value) != value:
                raise ValueError(
                    f"pod.nodeSelector and gpu.nodeSelector disagree on a label ({key})"
                )
        return self

    @model_validator(mode="after")
    def _adapter_names(self) -> ModelDeploymentSpec:
        names = [adapter.name for adapter in self.adapters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"adapter names must be unique (repeated: {', '.join(duplicates)})")
        if self.model.alias is not None and self.model.alias in names:
            raise ValueError(f"adapter {self.model.alias!r} is named like the model's alias")
        return self

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


class WakeFetch(ApiModel):
    """How the last started server got its model, as it reported it."""

    source: str = Field(default="", description="The URI scheme (s3, https, hf, file).")
    cache: str = Field(default="", description="hit, miss or local.")
    bytes: int = 0
    seconds: float = 0.0
    connections: int = 0


class WakeStage(ApiModel):
    name: str
    seconds: float = Field(description="Since the previous stage with evidence.")


class LastWake(ApiModel):
    """The last server pod's start, stage by stage, from object timestamps and Events."""

    pod: str
    pod_uid: str = Field(alias="podUID")
    started_at: str = Field(description="The operator's scale-up (ScaledUp Event).")
    total_seconds: float
    stages: list[WakeStage] = Field(
        default_factory=list,
        description=(
            "Each stage with evidence, in order: podCreated, nodeClaimed, nodeLaunched, "
            "nodeRegistered, gpuAllocatable, scheduled, imagePulled, started, fetched, "
            "loaded, ready."
        ),
    )
    summary: str = Field(default="", description="The total and the longest stages.")
    image: str | None = Field(default=None, description="pulled, or present on the node.")
    fetch: WakeFetch | None = None


class DemandPattern(ApiModel):
    """What schedule.learnedPrewarm has counted (first requests after a quiet hour)."""

    slots: dict[str, int] = Field(
        default_factory=dict,
        description="Per quarter-hour (weekday-07:45): days with a first request in it.",
    )
    days: dict[str, int] = Field(default_factory=dict, description="Days with requests.")
    last_day: str = ""
    last_slot_day: str = ""


class RequestGaps(ApiModel):
    """What idleTimeout: auto has learned, kept here so an operator restart keeps it."""

    last_request_time: str | None = Field(
        default=None, description="The last request already counted."
    )
    counts: dict[str, list[int]] = Field(
        default_factory=dict,
        description=(
            "Per local hour of the schedule's clock (weekday-21, weekend-09): how many gaps "
            "after a request fell in each bucket (upper edges 30s 1m 2m 3m 5m 7m 10m 15m "
            "20m 30m 45m 1h 2h 4h 8h, then longer)."
        ),
    )


class WakeBackoff(ApiModel):
    """A model that failed is woken again only after a backoff (docs/gateway.md)."""

    failures: int = Field(description="Failures since the spec changed or a replica served.")
    failing_since: str | None = Field(
        default=None, description="When the current failure began (while replicas fail)."
    )
    next_wake_allowed: str | None = Field(
        default=None,
        description=(
            "Until then the gateway answers 503 model_failing instead of waking the model "
            "(1m after the first failure, doubling up to 1h)."
        ),
    )
    observed_generation: int | None = None
    retry_token: str | None = Field(
        default=None,
        description="The siesta.dev/wake-retry annotation these failures count under.",
    )


class CostTotals(ApiModel):
    since: str
    node_hours: float = Field(
        default=0.0, description="GPU node-hours (shared nodes split by GPUs requested)."
    )
    spend: float = Field(default=0.0, description="Those node-hours priced, USD.")
    always_on: float = Field(
        default=0.0, description="The same time with the model always on (>= 1 replica), USD."
    )
    saved: float = Field(default=0.0, description="alwaysOn - spend, USD.")
    wakes: int = Field(default=0, description="Starts from zero replicas.")
    wakes_in_window: int = Field(
        default=0, description="Of those, started inside a schedule window (prewarm not counted)."
    )


class CostNode(ApiModel):
    node: str
    instance_type: str = ""
    share: float = 0.0
    price_per_hour: float | None = None


class CostWake(ApiModel):
    started_at: str
    seconds: float
    in_window: bool = False


class CostStatus(ApiModel):
    """Measured GPU cost (docs/operations.md, "Cost"), written by the operator's cost loop."""

    updated_at: str
    currency: str = "USD"
    summary: str = Field(default="", description="This week, for the printer column.")
    today: CostTotals
    week: CostTotals = Field(description="Since Monday 00:00 on the schedule's clock.")
    total: CostTotals = Field(description="Since the ModelDeployment was created.")
    nodes: list[CostNode] = Field(
        default_factory=list, description="The nodes the model's pods hold at updatedAt."
    )
    always_on_per_hour: float | None = None
    unobserved_seconds: float = Field(
        default=0.0, description="Time the operator did not sample (it was down), not counted."
    )
    wakes: list[CostWake] = Field(default_factory=list, description="The latest wakes.")
    days: list[CostTotals] = Field(
        default_factory=list, description="Finished days, oldest first (the last 31)."
    )


class BridgeStatus(ApiModel):
    """The CPU bridge (docs/bridge.md): what runs, in which state and why."""

    replicas: int = 0
    ready_replicas: int = 0
    desired_replicas: int = 0
    state: str = Field(
        default="Asleep",
        description="Asleep, Waking, Serving, HandingOver, Draining or Failing.",
    )
    reason: str = ""
    gpu: str | None = Field(
        default=None,
        description="What the bridge means for the GPU replica now (gpuAfter), if anything.",
    )
    since: str | None = Field(default=None, description="When the bridge entered its state.")
    demand_since: str | None = Field(
        default=None, description="When the requests the bridge answers began (for gpuAfter)."
    )
    failed_at: str | None = Field(default=None, description="When the bridge last failed.")
    failure: str | None = Field(default=None, description="Its container's words when it failed.")
    failed_spec: str | None = Field(
        default=None, description="A hash of the spec.bridge that failed (a new one is tried)."
    )


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
    last_wake: LastWake | None = None
    manual_override: ManualOverride | None = None
    request_gaps: RequestGaps | None = None
    demand_pattern: DemandPattern | None = None
    cost: CostStatus | None = None
    selector: str | None = Field(
        default=None, description="Pod label selector (for the scale subresource)."
    )
    observed_generation: int | None = None
    wake_backoff: WakeBackoff | None = None
    bridge: BridgeStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)


class ModelDeployment(BaseModel):
    """A whole object as users write it (apiVersion, kind, metadata, spec)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    api_version: ApiVersionField = Field(alias="apiVersion")
    kind: KindField
    metadata: dict[str, Any]
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @model_validator(mode="after")
    def _adapters_not_named_like_the_model(self) -> ModelDeployment:
        if any(adapter.name == self.alias for adapter in self.spec.adapters):
            raise ValueError(f"adapter {self.alias!r} is named like the model (its alias)")
        return self

    @model_validator(mode="after")
    def _not_named_like_a_bridge(self) -> ModelDeployment:
        if self.name.endswith(BRIDGE_SUFFIX):
            raise ValueError(
                f"a ModelDeployment's name cannot end in {BRIDGE_SUFFIX}: that is the name of "
                "a model's CPU bridge"
            )
        return self

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))

    @property
    def alias(self) -> str:
        return self.spec.model.alias or self.name
