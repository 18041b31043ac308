"""Kubernetes API calls the operator makes itself: few, counted, conflict-safe.

Reads come from kopf's watch streams (indexes of pods, Leases, StatefulSets and Services);
this module only writes, plus a GET when a write conflicts. The `kubernetes` client is
synchronous, so every call runs in a thread and the event loop never blocks. Every call is
counted in `siesta_operator_api_calls_total`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from siesta.api.models import GROUP, KIND, PLURAL, VERSION
from siesta.operator import render
from siesta.operator.observe import format_time
from siesta.operator.telemetry import API_CALLS

logger = logging.getLogger(__name__)
T = TypeVar("T")
CONFLICT_RETRIES = 5


def api_error_message(error: ApiException) -> str:
    """The API server's own message for a failed request (status code first)."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return f"{error.status} {message or error.reason}".strip()


class RetryLater(Exception):
    """The cluster is not ready for this step yet (e.g. an orphaned StatefulSet still exists)."""

    def __init__(self, message: str, delay: float = 2.0) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class ChildView:
    """What the operator keeps of a StatefulSet or Service it owns (the children index)."""

    kind: str
    name: str
    config_hash: str
    resource_version: str
    replicas: int = 0
    ready_replicas: int = 0
    spec: dict[str, Any] | None = None
    """StatefulSet: the fields that cannot change in place; Service: clusterIP(s)."""


def child_view(body: dict[str, Any]) -> ChildView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    kind = str(body.get("kind") or "")
    if kind == "StatefulSet":
        kept = {
            k: copy.deepcopy(spec.get(k)) for k in render.IMMUTABLE_STATEFULSET_FIELDS if k in spec
        }
    else:
        kept = {k: copy.deepcopy(spec.get(k)) for k in ("clusterIP", "clusterIPs") if k in spec}
    return ChildView(
        kind=kind,
        name=str(meta.get("name", "")),
        config_hash=str((meta.get("annotations") or {}).get(render.HASH_ANNOTATION, "")),
        resource_version=str(meta.get("resourceVersion", "")),
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        spec=kept,
    )


def load_credentials() -> None:
    """In a pod: the ServiceAccount; elsewhere: KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config()  # type: ignore[no-untyped-call]


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api_client = api_client or client.ApiClient()
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.instance = socket.gethostname()

    async def _call(
        self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as error:
            API_CALLS.labels(verb, resource, str(error.status)).inc()
            raise
        except Exception:
            API_CALLS.labels(verb, resource, "error").inc()
            raise
        API_CALLS.labels(verb, resource, "200").inc()
        return result

    # --- children -----------------------------------------------------------------------

    async def ensure(
        self, desired: dict[str, Any], existing: ChildView | None, replicas: int = 0
    ) -> bool:
        """Create or update one child so it matches `desired`; returns whether it wrote.

        `replicas` is used only when a StatefulSet is (re-)created: the last decided count,
        so that re-creating one never scales the model.
        """
        wanted_hash = desired["metadata"]["annotations"][render.HASH_ANNOTATION]
        if existing is not None and existing.config_hash == wanted_hash:
            return False
        if desired["kind"] == "StatefulSet":
            await self._ensure_statefulset(desired, existing, replicas)
        else:
            await self._ensure_service(desired, existing)
        return True

    async def _read(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            if kind == "StatefulSet":
                found = await self._call(
                    "get", "statefulsets", self.apps.read_namespaced_stateful_set, name, namespace
                )
            else:
                found = await self._call(
                    "get", "services", self.core.read_namespaced_service, name, namespace
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = self.api_client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return result

    async def _ensure_statefulset(
        self, desired: dict[str, Any], existing: ChildView | None, replicas: int
    ) -> None:
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        if existing is None:
            await self._create(desired, replicas)
            return
        for _ in range(CONFLICT_RETRIES):
            current_dict = await self._read("StatefulSet", name, namespace)
            if current_dict is None:
                await self._create(desired, replicas)
                return
            current_replicas = int(current_dict["spec"].get("replicas") or 0)
            if render.immutable_fields_differ(desired, current_dict["spec"]):
                # Orphan the pods (they keep serving) and create the new StatefulSet,
                # which adopts them; replicas carry over so nothing is scaled by this.
                logger.info(
                    "re-creating StatefulSet %s/%s: an immutable field changed", namespace, name
                )
                await self._call(
                    "delete",
                    "statefulsets",
                    self.apps.delete_namespaced_stateful_set,
                    name,
                    namespace,
                    body=client.V1DeleteOptions(propagation_policy="Orphan"),
                )
                raise RetryLater(
                    f"StatefulSet {name} deleted for re-creation with {current_replicas} replicas",
                    1.0,
                )
            body = copy.deepcopy(desired)
            body["metadata"]["resourceVersion"] = current_dict["metadata"]["resourceVersion"]
            body["spec"]["replicas"] = current_replicas
            try:
                await self._call(
                    "update",
                    "statefulsets",
                    self.apps.replace_namespaced_stateful_set,
                    name,
                    namespace,
                    body,
                )
                return
            except ApiException as error:
                if error.status == 409:
                    continue
                if error.status == 404:
                    await self._create(desired, replicas)
                    return
                raise
        raise RetryLater(f"StatefulSet {name}: conflicts on every update attempt", 1.0)

    async def _ensure_service(self, desired: dict[str, Any], existing: ChildView | None) -> None:
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        if existing is None:
            await self._create(desired)
            return
        for _ in range(CONFLICT_RETRIES):
            current_dict = await self._read("Service", name, namespace)
            if current_dict is None:
                await self._create(desired)
                return
            body = copy.deepcopy(desired)
            body["metadata"]["resourceVersion"] = current_dict["metadata"]["resourceVersion"]
            for key in ("clusterIP", "clusterIPs"):
                if key in current_dict["spec"]:
                    body["spec"][key] = current_dict["spec"][key]
            try:
                await self._call(
                    "update",
                    "services",
                    self.core.replace_namespaced_service,
                    name,
                    namespace,
                    body,
                )
                return
            except ApiException as error:
                if error.status == 409:
                    continue
                if error.status == 404:
                    await self._create(desired)
                    return
                raise
        raise RetryLater(f"Service {name}: conflicts on every update attempt", 1.0)

    async def _create(self, desired: dict[str, Any], replicas: int = 0) -> None:
        namespace = desired["metadata"]["namespace"]
        try:
            if desired["kind"] == "StatefulSet":
                body = copy.deepcopy(desired)
                body["spec"]["replicas"] = replicas
                await self._call(
                    "create",
                    "statefulsets",
                    self.apps.create_namespaced_stateful_set,
                    namespace,
                    body,
                )
            else:
                await self._call(
                    "create", "services", self.core.create_namespaced_service, namespace, desired
                )
        except ApiException as error:
            if (
                error.status == 409
            ):  # exists (our watch has not seen it yet, or it is being deleted)
                raise RetryLater(
                    f"{desired['kind']} {desired['metadata']['name']} already exists", 1.0
                ) from None
            raise

    # --- scaling and the ModelDeployment -------------------------------------------------

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Write replicas through the StatefulSet's /scale subresource (no conflicts: no RV)."""
        await self._call(
            "patch",
            "statefulsets/scale",
            self.apps.patch_namespaced_stateful_set_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            "patch",
            f"{PLURAL}/status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )

    async def clear_manual_replicas(self, namespace: str, name: str) -> None:
        """Remove spec.manualReplicas once the override has expired (docs/contracts.md)."""
        await self._call(
            "patch",
            PLURAL,
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": {"manualReplicas": None}},
        )

    async def post_event(
        self, owner: render.Owner, reason: str, message: str, now: datetime, warning: bool = False
    ) -> None:
        stamp = format_time(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "siesta-operator"},
            "reportingComponent": "siesta.dev/operator",
            "reportingInstance": self.instance[:128],
        }
        await self._call(
            "create", "events", self.core.create_namespaced_event, owner.namespace, event
        )
