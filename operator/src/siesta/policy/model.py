"""Inputs and output of the scaling decision. Plain frozen dataclasses: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from siesta.policy.idle import GapHistory
from siesta.policy.prewarm import DemandPattern


@dataclass(frozen=True)
class Observed:
    """What the cluster looks like now."""

    replicas: int = 0
    """The StatefulSet's current replica count (what the operator last wrote)."""
    ready: int = 0
    starting: int = 0
    """Replicas making progress but not ready: no pod yet, Pending, pulling, downloading,
    loading. They hold a scale-down (rule 5), within scaling.startupTimeout."""
    waiting_for_gpu: int = 0
    """Of the starting pods, those the scheduler cannot place yet (no GPU node)."""
    failing: int = 0
    """Replicas that crash, cannot pull or cannot start: they never hold a scale-down."""
    failure_reason: str = ""
    """Why the first failing pod fails: CrashLoopBackOff, OOMKilled, ImagePullBackOff..."""
    failure: str = ""
    """The first failing pod, its reason and its container's last words (one line)."""
    starting_since: datetime | None = None
    """When the oldest starting pod was created (startupTimeout counts from there)."""


@dataclass(frozen=True)
class Signals:
    """Load and demand, as measured by the operator's adapters."""

    load: float | None = 0.0
    """Value of the load query; None means unavailable (Prometheus down, query error, no data)."""
    load_error: str = ""
    """Why the load is unknown, or why it came from a fallback source."""
    load_source: str = "prometheus"
    """Who measured the load: prometheus, servers (their /metrics) or gateway (in-flight)."""
    pending_requests: int = 0
    """Requests the gateway holds for this model right now."""
    last_request_time: datetime | None = None
    """The last request any gateway saw for this model."""
    bridge_in_flight: int = 0
    """Requests on the model's CPU bridge, not finished (read by the bridge decision only)."""


@dataclass(frozen=True)
class ManualOverride:
    replicas: int
    since: datetime
    until: datetime


@dataclass(frozen=True)
class Memory:
    """What the previous decision left behind (persisted in the ModelDeployment's status)."""

    desired: int | None = None
    last_active_time: datetime | None = None
    scale_down_since: datetime | None = None
    manual_override: ManualOverride | None = None
    last_request_time: datetime | None = None
    """The last request time already counted in request_gaps."""
    request_gaps: GapHistory = field(default_factory=GapHistory)
    """Gaps between requests, for idleTimeout: auto (policy.idle)."""
    demand_pattern: DemandPattern = field(default_factory=DemandPattern)
    """First requests after a quiet hour, for schedule.learnedPrewarm (policy.prewarm)."""


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    time: datetime
    replicas: int
    reason: str


@dataclass(frozen=True)
class Decision:
    desired: int
    reasons: list[str]
    """Human-readable, the deciding reason first."""
    next_change: datetime | None
    """The earliest time the answer can change without new input (the operator sleeps until then)."""
    conditions: list[Condition] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    rule: str = "min"
    """The rule behind the first reason, a low-cardinality label: schedule, min, load, demand,
    idle-timeout, idle, metrics-unavailable, schedule-invalid, max, cold-start,
    scale-down-delay, paused, manual or learned-prewarm."""
    clear_manual_replicas: bool = False
    """The manual override has expired: the operator should remove spec.manualReplicas."""
    window: str | None = None
