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
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from siesta.api.contract import API_VERSION, GROUP, KIND, PLURAL, VERSION
from siesta.operator import render
from siesta.operator.observe import format_time
from siesta.operator.telemetry import API_CALLS

logger = logging.getLogger(__name__)
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
class ChildApi:
    """The calls for one kind of child, and the plural they are counted under."""

    resource: str
    read: Callable[..., Any]
    create: Callable[..., Any]
    replace: Callable[..., Any]
    delete: Callable[..., Any]


def _replacement(desired: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`desired` as a replacement for `current`: what the server owns is carried over."""
    body = copy.deepcopy(desired)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    if desired["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):
            if key in current["spec"]:
                body["spec"][key] = current["spec"][key]
    elif desired["kind"] == "StatefulSet":
        body["spec"]["replicas"] = int(current["spec"].get("replicas") or 0)  # owned by /scale
    return body


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
        networking = client.NetworkingV1Api(self.api_client)
        rbac = client.RbacAuthorizationV1Api(self.api_client)
        self.children = {
            "StatefulSet": ChildApi(
                "statefulsets",
                self.apps.read_namespaced_stateful_set,
                self.apps.create_namespaced_stateful_set,
                self.apps.replace_namespaced_stateful_set,
                self.apps.delete_namespaced_stateful_set,
            ),
            "Service": ChildApi(
                "services",
                self.core.read_namespaced_service,
                self.core.create_namespaced_service,
                self.core.replace_namespaced_service,
                self.core.delete_namespaced_service,
            ),
            "NetworkPolicy": ChildApi(
                "networkpolicies",
                networking.read_namespaced_network_policy,
                networking.create_namespaced_network_policy,
                networking.replace_namespaced_network_policy,
                networking.delete_namespaced_network_policy,
            ),
            "RoleBinding": ChildApi(
                "rolebindings",
                rbac.read_namespaced_role_binding,
                rbac.create_namespaced_role_binding,
                rbac.replace_namespaced_role_binding,
                rbac.delete_namespaced_role_binding,
            ),
        }
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

    async def update(self, desired: dict[str, Any], replicas: int = 0) -> None:
        """Replace a child with `desired`, keeping what the server owns; conflicts are retried.

        `replicas` is used only if the child turns out to be gone: then it is created.
        """
        kind, meta = desired["kind"], desired["metadata"]
        api = self.children[kind]
        for _ in range(CONFLICT_RETRIES):
            current = await self._read(api, meta["name"], meta["namespace"])
            if current is None:
                await self.create(desired, replicas)
                return
            try:
                await self._call(
                    "update",
                    api.resource,
                    api.replace,
                    meta["name"],
                    meta["namespace"],
                    _replacement(desired, current),
                )
                return
            except ApiException as error:
                if error.status == 409:
                    continue
                if error.status == 404:
                    await self.create(desired, replicas)
                    return
                raise
        raise RetryLater(f"{kind} {meta['name']}: conflicts on every update attempt", 1.0)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child (and, for a StatefulSet, its pods: they drain on the way out)."""
        api = self.children[kind]
        try:
            await self._call("delete", api.resource, api.delete, name, namespace)
        except ApiException as error:
            if error.status != 404:  # already gone: what we wanted
                raise

    async def delete_orphaning_pods(self, namespace: str, name: str) -> None:
        """Delete a StatefulSet but not its pods (they keep serving; a new one adopts them)."""
        try:
            await self._call(
                "delete",
                "statefulsets",
                self.apps.delete_namespaced_stateful_set,
                name,
                namespace,
                body=client.V1DeleteOptions(propagation_policy="Orphan"),
            )
        except ApiException as error:
            if error.status != 404:  # already gone: what we wanted
                raise

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete the pod `name` only if it is still the one with `uid` (a newer pod of the
        same name is never touched). It gets its full grace period: the server drains."""
        try:
            await self._call(
                "delete",
                "pods",
                self.core.delete_namespaced_pod,
                name,
                namespace,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or already another pod: nothing to do
                raise

    async def _read(self, api: ChildApi, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            found = await self._call("get", api.resource, api.read, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = self.api_client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return result

    async def create(self, desired: dict[str, Any], replicas: int = 0) -> None:
        """Create a child; a StatefulSet gets `replicas` (later, replicas go through /scale)."""
        kind, namespace = desired["kind"], desired["metadata"]["namespace"]
        api = self.children[kind]
        body = copy.deepcopy(desired)
        if kind == "StatefulSet":
            body["spec"]["replicas"] = replicas
        try:
            await self._call("create", api.resource, api.create, namespace, body)
        except ApiException as error:
            if error.status == 409:  # exists: our watch has not seen it yet, or it is being deleted
                raise RetryLater(
                    f"{kind} {desired['metadata']['name']} already exists", 1.0
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
                "apiVersion": API_VERSION,
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

    async def pod_events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """The Events about one pod (the autoscaler's verdict on it, see autoscaler.py)."""
        return await self.events(namespace, "Pod", pod)

    async def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """The Events about one object of `kind`."""
        found = await self._call(
            "list",
            "events",
            self.core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        return self._plain(found).get("items", [])  # type: ignore[no-any-return]

    # --- reads of the wake recorder and the cost loop -----------------------------------

    async def model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ModelDeployment by a list (the operator's role lists them but does not get them)."""
        found = await self._call(
            "list",
            PLURAL,
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
        )
        items = found.get("items") or []
        return dict(items[0]) if items else None

    async def pods(self, namespace: str | None = None, **selectors: str) -> list[dict[str, Any]]:
        """Pods of one namespace, or of all (`field_selector`, `label_selector` pass through)."""
        if namespace is None:
            found = await self._call(
                "list", "pods", self.core.list_pod_for_all_namespaces, **selectors
            )
        else:
            found = await self._call(
                "list", "pods", self.core.list_namespaced_pod, namespace, **selectors
            )
        return [self._plain(item) for item in found.items]

    async def node(self, name: str) -> dict[str, Any] | None:
        """A Node; None when it is gone or the operator may not read Nodes."""
        try:
            return self._plain(await self._call("get", "nodes", self.core.read_node, name))
        except ApiException as error:
            if error.status in (403, 404):
                return None
            raise

    async def node_claims(self) -> list[dict[str, Any]]:
        """Karpenter's NodeClaims; none without Karpenter or the right to read them."""
        try:
            found = await self._call(
                "list",
                "nodeclaims",
                self.custom.list_cluster_custom_object,
                "karpenter.sh",
                "v1",
                "nodeclaims",
            )
        except ApiException as error:
            if error.status in (403, 404):
                return []
            raise
        return [dict(claim) for claim in found.get("items", [])]

    def _plain(self, model: Any) -> dict[str, Any]:
        """A client model as the JSON dict the API server sent."""
        return self.api_client.sanitize_for_serialization(model)  # type: ignore[no-any-return,no-untyped-call]
