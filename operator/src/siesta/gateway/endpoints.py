"""Ready endpoints from EndpointSlices, grouped by the model they serve.

One `SliceIndex` per kind of replica: the model's own (its Service, named like the model,
labelled MODEL_LABEL) and its CPU bridge (the Service `bridge_name(model)`, labelled
BRIDGE_LABEL). Each is fed by its own watch, so a relist of one never drops the other's
slices. No I/O here: `kube` feeds it, tests feed it dictionaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from siesta.api.contract import BRIDGE_LABEL, HTTP_PORT_NAME, ModelKey, bridge_name

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """One ready replica: where to connect, and a key that changes with the pod."""

    key: str
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def endpoints_from_slice(obj: Obj, port_name: str = HTTP_PORT_NAME) -> list[Endpoint]:
    """Ready (and not terminating) endpoints of an EndpointSlice, on its `http` port."""
    ports = obj.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == port_name), None)
    if port is None and len(ports) == 1:
        port = ports[0].get("port")
    if port is None:
        return []
    found = []
    for endpoint in obj.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # `ready` unset means ready (API docs); terminating endpoints are never ready.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        target = endpoint.get("targetRef") or {}
        key = f"{target.get('uid') or target.get('name') or ''}@{addresses[0]}:{port}"
        found.append(Endpoint(key=key, address=addresses[0], port=int(port)))
    return found


def object_key(obj: Obj) -> ModelKey:
    metadata = obj.get("metadata", {})
    return ModelKey(str(metadata.get("namespace", "default")), str(metadata.get("name", "")))


def _labels(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def model_service_owner(obj: Obj) -> ModelKey | None:
    """A model's own Service is named like the model (docs/contracts.md)."""
    return ModelKey(object_key(obj).namespace, str(_labels(obj).get(SERVICE_NAME_LABEL, "")))


def bridge_service_owner(obj: Obj) -> ModelKey | None:
    """The model whose bridge this slice's Service is; None for any other Service that
    happens to carry the label."""
    labels = _labels(obj)
    model = str(labels.get(BRIDGE_LABEL, ""))
    if not model or labels.get(SERVICE_NAME_LABEL) != bridge_name(model):
        return None
    return ModelKey(object_key(obj).namespace, model)


Owner = Callable[[Obj], "ModelKey | None"]


class SliceIndex:
    """Ready endpoints per model, merged from its slices; calls `on_change(model)` when a
    model's set changes."""

    def __init__(self, owner: Owner, on_change: Callable[[ModelKey], None]) -> None:
        self._owner = owner
        self._on_change = on_change
        self._slices: dict[ModelKey, tuple[ModelKey, list[Endpoint]]] = {}  # slice -> model
        self._endpoints: dict[ModelKey, list[Endpoint]] = {}

    def apply(self, event_type: str, obj: Obj) -> None:
        slice_key = object_key(obj)
        previous = self._slices.pop(slice_key, None)
        changed = {previous[0]} if previous else set()
        owner = self._owner(obj)
        if event_type != "DELETED" and owner is not None:
            self._slices[slice_key] = (owner, endpoints_from_slice(obj))
            changed.add(owner)
        for model in changed:
            self._rebuild(model)

    def replace(self, objects: Iterable[Obj], namespace: str | None = None) -> None:
        """A fresh list (of one namespace, or of all when `namespace` is None)."""
        models = {m for k, (m, _) in self._slices.items() if namespace is None or k[0] == namespace}
        self._slices = {
            k: v for k, v in self._slices.items() if namespace is not None and k[0] != namespace
        }
        for obj in objects:
            owner = self._owner(obj)
            if owner is not None:
                self._slices[object_key(obj)] = (owner, endpoints_from_slice(obj))
                models.add(owner)
        for model in models:
            self._rebuild(model)

    def _rebuild(self, model: ModelKey) -> None:
        merged: dict[str, Endpoint] = {}
        for owner, endpoints in self._slices.values():
            if owner == model:
                for endpoint in endpoints:
                    merged.setdefault(endpoint.key, endpoint)
        current = sorted(merged.values(), key=lambda e: e.key)
        if current != self._endpoints.get(model, []):
            if current:
                self._endpoints[model] = current
            else:
                self._endpoints.pop(model, None)
            self._on_change(model)

    def endpoints(self, model: ModelKey) -> list[Endpoint]:
        return self._endpoints.get(model, [])
