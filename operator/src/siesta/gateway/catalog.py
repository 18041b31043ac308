"""What the gateway knows about the cluster: models by name and their ready endpoints.

Names are per namespace: `NAMESPACE/ALIAS` (and `NAMESPACE/NAME`) always reach a model; the
bare alias reaches the oldest model with that alias, and only it, so a newer model in
another namespace (staging) never takes the traffic of an older one (production). The
others are told so in their status (the operator's `NameUnique` condition).

A model's LoRA adapters (spec.adapters) are names of that model too: a request for an
adapter goes to the model's pods, wakes it, and counts as the model's demand and load.

A model with `spec.bridge` also has a CPU bridge: its ready endpoints are kept apart from
the model's own (`bridge_endpoints`), so routing can prefer a GPU replica.

Fed from watch events (ModelDeployments, EndpointSlices); read on every request without
any API call. No I/O here: `kube` feeds it, tests feed it dictionaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siesta.api.contract import DEFAULT_WAKE_TIMEOUT, MODEL_SERVING_CONDITION, ModelKey
from siesta.api.durations import parse_duration
from siesta.gateway.endpoints import Endpoint as Endpoint
from siesta.gateway.endpoints import (
    SliceIndex,
    bridge_service_owner,
    model_service_owner,
    object_key,
)
from siesta.gateway.endpoints import endpoints_from_slice as endpoints_from_slice

DEFAULT_WAKE_SECONDS = parse_duration(DEFAULT_WAKE_TIMEOUT).total_seconds()
Obj = dict[str, Any]


@dataclass(frozen=True)
class ModelInfo:
    namespace: str
    name: str
    uid: str
    alias: str
    wake_timeout: float
    idle_timeout: float | None = None  # None: the operator's default
    phase: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    created: str = ""
    failure: str = ""
    """Why the model's replicas fail right now (its ModelServing condition), else ""."""
    adapters: tuple[str, ...] = ()  # LoRA adapter names served by the same pods
    max_held: int | None = None  # spec.scaling.maxHeldRequests; None: the gateway's default
    next_wake_allowed: float | None = None
    """status.wakeBackoff.nextWakeAllowed (epoch seconds): it failed; no wake before then."""
    last_failure: str = ""  # why it failed last (kept while it sleeps after failing)
    has_bridge: bool = False  # spec.bridge is set: a CPU bridge may answer while it wakes

    def wake_backoff(self, now: float) -> float:
        """Seconds until a request may wake this model after failures (0: it may now)."""
        return max(self.next_wake_allowed - now, 0.0) if self.next_wake_allowed else 0.0

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.namespace, self.name)


@dataclass(frozen=True)
class Route:
    """Where a requested name goes: the model, and the name its servers know (the alias or
    an adapter's name), which a qualified name is rewritten to."""

    model: ModelInfo
    served: str


def failure_from_status(status: Obj) -> str:
    """The operator's word that running replicas fail (ModelServing=False while replicas
    exist); a model asleep after failing is woken again after its backoff (`wake_backoff`)."""
    if not int(status.get("replicas") or 0):
        return ""
    return last_failure(status)


def last_failure(status: Obj) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == MODEL_SERVING_CONDITION and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "failing")
    return ""


def next_wake_allowed(status: Obj) -> float | None:
    """status.wakeBackoff.nextWakeAllowed as epoch seconds (None: no backoff, or unreadable)."""
    text = (status.get("wakeBackoff") or {}).get("nextWakeAllowed")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def model_from_object(obj: Obj) -> ModelInfo:
    """A ModelInfo from a ModelDeployment as the API server returns it (lenient)."""
    metadata = obj.get("metadata", {})
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = str(metadata.get("name", ""))
    alias = (spec.get("model") or {}).get("alias") or name
    adapters = tuple(
        str(adapter["name"])
        for adapter in spec.get("adapters") or []
        if isinstance(adapter, dict) and adapter.get("name")
    )
    wake_text = (spec.get("scaling") or {}).get("wakeTimeout")
    try:
        wake_timeout = (
            parse_duration(wake_text).total_seconds() if wake_text else DEFAULT_WAKE_SECONDS
        )
    except ValueError:
        wake_timeout = DEFAULT_WAKE_SECONDS
    max_held = (spec.get("scaling") or {}).get("maxHeldRequests")
    idle_text = (spec.get("scaling") or {}).get("idleTimeout")
    try:
        idle_timeout = parse_duration(idle_text).total_seconds() if idle_text else None
    except ValueError:
        idle_timeout = None
    return ModelInfo(
        namespace=str(metadata.get("namespace", "default")),
        name=name,
        uid=str(metadata.get("uid", "")),
        alias=str(alias),
        wake_timeout=wake_timeout,
        idle_timeout=idle_timeout,
        phase=status.get("phase"),
        replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        created=str(metadata.get("creationTimestamp", "")),
        failure=failure_from_status(status),
        adapters=adapters,
        max_held=max_held if isinstance(max_held, int) and max_held > 0 else None,
        next_wake_allowed=next_wake_allowed(status),
        last_failure=last_failure(status),
        has_bridge=isinstance(spec.get("bridge"), dict),  # present: a bridge, all defaults
    )


class Catalog:
    """Models by alias and their endpoints (their own and their bridge's); calls
    `on_endpoints(model)` when either set changes."""

    def __init__(self, on_endpoints: Callable[[ModelKey], None] | None = None) -> None:
        self._models: dict[ModelKey, ModelInfo] = {}
        self._routes: dict[str, Route] = {}  # every name that reaches a model
        self._listed: list[tuple[str, Route]] = []  # what /v1/models shows
        self._on_endpoints = on_endpoints or (lambda key: None)
        # Either set changing wakes the model's held requests: whichever is ready first.
        self._replicas = SliceIndex(model_service_owner, self._endpoints_changed)
        self._bridges = SliceIndex(bridge_service_owner, self._endpoints_changed)

    def _endpoints_changed(self, key: ModelKey) -> None:
        self._on_endpoints(key)

    # --- models -------------------------------------------------------------------------

    def apply_model(self, event_type: str, obj: Obj) -> None:
        key = object_key(obj)
        before = self._models.get(key)
        if event_type == "DELETED":
            self._models.pop(key, None)
        else:
            self._models[key] = model_from_object(obj)
        self._reindex()
        after = self._models.get(key)
        if after is None or (after.failure and (before is None or not before.failure)):
            # Held requests must learn that the model is gone, or that it is failing.
            self._on_endpoints(key)

    def replace_models(self, objects: Iterable[Obj], namespace: str | None = None) -> None:
        """A fresh list (of one namespace, or of all when `namespace` is None)."""
        kept = {
            k: m for k, m in self._models.items() if namespace is not None and k[0] != namespace
        }
        self._models = kept | {object_key(o): model_from_object(o) for o in objects}
        self._reindex()

    def _reindex(self) -> None:
        # Qualified names first (always addressable); then bare aliases, held by the oldest
        # model; then bare adapter names not taken by an alias or an older adapter.
        ordered = sorted(self._models.values(), key=lambda m: (m.created, m.namespace, m.name))
        routes: dict[str, Route] = {}
        listed: list[tuple[str, Route]] = []

        def add(name: str, route: Route, shown: bool = True) -> None:
            if name not in routes:
                routes[name] = route
                if shown:
                    listed.append((name, route))

        for model in ordered:
            for served in (model.alias, *model.adapters):
                add(f"{model.namespace}/{served}", Route(model, served))
            add(f"{model.namespace}/{model.name}", Route(model, model.alias), shown=False)
        for model in ordered:
            add(model.alias, Route(model, model.alias))
        for model in ordered:
            for adapter in model.adapters:
                add(adapter, Route(model, adapter))
        self._routes = routes
        self._listed = sorted(listed, key=lambda item: ("/" in item[0], item[0]))

    def route(self, name: str) -> Route | None:
        return self._routes.get(name)

    def model(self, name: str) -> ModelInfo | None:
        """The model serving `name`: a (qualified) alias, or one of its adapters."""
        route = self._routes.get(name)
        return route.model if route else None

    def listing(self) -> list[tuple[str, Route]]:
        """Every name /v1/models shows: bare names first, then `NAMESPACE/...` ones."""
        return list(self._listed)

    def holder(self, model: ModelInfo) -> ModelInfo | None:
        """The model that holds `model`'s bare alias, when that is another one."""
        route = self._routes.get(model.alias)
        return route.model if route and route.model.key != model.key else None

    def names(self) -> list[str]:
        return [name for name, _ in self._listed]

    def models(self) -> list[ModelInfo]:
        return sorted(self._models.values(), key=lambda m: (m.alias, m.namespace))

    def model_by_key(self, key: ModelKey) -> ModelInfo | None:
        return self._models.get(key)

    # --- endpoints ----------------------------------------------------------------------

    def apply_slice(self, event_type: str, obj: Obj) -> None:
        self._replicas.apply(event_type, obj)

    def replace_slices(self, objects: Iterable[Obj], namespace: str | None = None) -> None:
        """A fresh list (of one namespace, or of all when `namespace` is None)."""
        self._replicas.replace(objects, namespace)

    def apply_bridge_slice(self, event_type: str, obj: Obj) -> None:
        self._bridges.apply(event_type, obj)

    def replace_bridge_slices(self, objects: Iterable[Obj], namespace: str | None = None) -> None:
        self._bridges.replace(objects, namespace)

    def endpoints(self, key: ModelKey) -> list[Endpoint]:
        """Ready endpoints of the model's Service (named like the model, contracts.md)."""
        return self._replicas.endpoints(key)

    def bridge_endpoints(self, key: ModelKey) -> list[Endpoint]:
        """Ready endpoints of the model's CPU bridge (its Service `bridge_name(model)`)."""
        return self._bridges.endpoints(key)
