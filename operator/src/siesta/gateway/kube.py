"""The gateway's only Kubernetes I/O: list+watch into the catalog, and demand Lease writes.

Plain aiohttp against the API server (no per-request API calls, no threads). Credentials
come from the kubernetes package's loaders: in-cluster ServiceAccount, or a kubeconfig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from siesta.api.contract import (
    BRIDGE_LABEL,
    GROUP,
    MODEL_LABEL,
    PLURAL,
    VERSION,
    ModelKey,
    demand_lease_name,
)
from siesta.gateway.catalog import Catalog, Obj
from siesta.gateway.demand import (
    DemandTracker,
    due_at,
    lease_body,
    lease_patch,
    renew_time,
)
from siesta.gateway.metrics import GatewayMetrics

log = logging.getLogger("siesta.gateway.kube")

WATCH_TIMEOUT_SECONDS = 290
BACKOFF_MAX = 5.0


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"API server answered {status}: {text[:300]}")
        self.status = status


@dataclass
class KubeConfig:
    host: str
    ssl_context: ssl.SSLContext | bool
    token: Callable[[], str | None]


def load_config(kubeconfig: str | None = None) -> KubeConfig:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    from kubernetes import client, config  # heavy import, only here

    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    context: ssl.SSLContext | bool
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        context = False
    if configuration.cert_file and isinstance(context, ssl.SSLContext):
        context.load_cert_chain(configuration.cert_file, configuration.key_file)

    def token() -> str | None:
        # auth_settings() re-reads refreshed ServiceAccount tokens; the key it is stored under
        # differs between kubernetes package versions ("authorization", "BearerToken").
        settings: Any = configuration.auth_settings()
        for setting in settings.values():
            if setting.get("in") == "header" and str(setting.get("key")).lower() == "authorization":
                value = setting.get("value")
                if value:
                    return str(value)
        return None

    return KubeConfig(host=configuration.host.rstrip("/"), ssl_context=context, token=token)


class KubeClient:
    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.config.token()
        if token:
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        async with self.session.request(
            method,
            self.config.host + path,
            params=params,
            data=json.dumps(body) if body is not None else None,
            headers=self._headers(content_type if body is not None else None),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, text)
            result: Obj = json.loads(text)
            return result

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[Obj]:
        """Events of one watch request, until the server ends it."""
        query = {
            **params,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
        }
        async with self.session.get(
            self.config.host + path,
            params=query,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=WATCH_TIMEOUT_SECONDS + 30
            ),
        ) as response:
            if response.status >= 400:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


async def informer(
    client: KubeClient,
    path: str,
    params: dict[str, str],
    replace: Callable[[list[Obj]], None],
    apply: Callable[[str, Obj], None],
    on_synced: Callable[[], None],
) -> None:
    """List, then watch from the list's resourceVersion; list again after 410 or errors."""
    backoff = 0.2
    while True:
        try:
            listed = await client.request("GET", path, params=params)
            replace(list(listed.get("items") or []))
            on_synced()
            version = str(listed["metadata"].get("resourceVersion", ""))
            while True:
                async for event in client.watch(path, {**params, "resourceVersion": version}):
                    kind = event.get("type", "")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind != "BOOKMARK":
                        apply(kind, obj)
                    backoff = 0.2
        except asyncio.CancelledError:
            raise
        except Gone:
            log.info("watch of %s expired; listing again", path)
        except Exception as error:  # any failure: back off and list again
            log.warning("watch of %s failed: %s; retrying in %.1fs", path, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)


def start_informers(
    client: KubeClient,
    catalog: Catalog,
    namespaces: Iterable[str],
    on_synced: Callable[[str], None],
) -> list[asyncio.Task[None]]:
    """Background tasks that keep `catalog` current; `on_synced(name)` after each first list."""
    scopes: list[str | None] = [*namespaces] or [None]
    tasks = []
    for namespace in scopes:
        tasks += _scope_informers(client, catalog, namespace, on_synced)
    return tasks


def _scope_informers(
    client: KubeClient,
    catalog: Catalog,
    namespace: str | None,
    on_synced: Callable[[str], None],
) -> list[asyncio.Task[None]]:
    scope = f"/namespaces/{namespace}" if namespace else ""
    label = namespace or "all"

    def replace_models(items: list[Obj]) -> None:
        catalog.replace_models(items, namespace)

    def replace_slices(items: list[Obj]) -> None:
        catalog.replace_slices(items, namespace)

    def replace_bridge_slices(items: list[Obj]) -> None:
        catalog.replace_bridge_slices(items, namespace)

    models = informer(
        client,
        f"/apis/{GROUP}/{VERSION}{scope}/{PLURAL}",
        {},
        replace_models,
        catalog.apply_model,
        lambda: on_synced(f"models/{label}"),
    )
    slices = informer(
        client,
        f"/apis/discovery.k8s.io/v1{scope}/endpointslices",
        {"labelSelector": MODEL_LABEL},
        replace_slices,
        catalog.apply_slice,
        lambda: on_synced(f"slices/{label}"),
    )
    # The CPU bridges' slices: a watch of their own (they carry BRIDGE_LABEL, never
    # MODEL_LABEL), so a relist of either set leaves the other alone.
    bridges = informer(
        client,
        f"/apis/discovery.k8s.io/v1{scope}/endpointslices",
        {"labelSelector": BRIDGE_LABEL},
        replace_bridge_slices,
        catalog.apply_bridge_slice,
        lambda: on_synced(f"bridges/{label}"),
    )
    return [
        asyncio.create_task(models, name=f"watch-models-{label}"),
        asyncio.create_task(slices, name=f"watch-slices-{label}"),
        asyncio.create_task(bridges, name=f"watch-bridges-{label}"),
    ]


class DemandWriter:
    """Writes demand Leases when `DemandTracker` says a write is due; `kick()` to re-check."""

    def __init__(
        self,
        client: KubeClient,
        catalog: Catalog,
        tracker: DemandTracker,
        pod_name: str,
        metrics: GatewayMetrics,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.tracker = tracker
        self.pod_name = pod_name
        self.metrics = metrics
        self._event = asyncio.Event()
        self._exists: set[ModelKey] = set()
        self._wake_at = math.inf

    def kick(self, model: ModelKey | None = None) -> None:
        """Re-check now; with `model`, only if its next write is due before the planned wake."""
        if model is not None:
            demand = self.tracker.models.get(model)
            due = None if demand is None else due_at(demand, time.monotonic())
            if due is None or due >= self._wake_at:
                return  # the common warm case: nothing new, no task switch
        self._event.set()

    async def run(self) -> None:
        while True:
            self._wake_at = math.inf  # kicks during a pass re-run it
            now = time.monotonic()
            for model in self.tracker.due(now):
                await self._write(model)
            next_due = self.tracker.next_due(time.monotonic())
            self._wake_at = math.inf if next_due is None else next_due
            if not self._event.is_set():
                timeout = None if next_due is None else max(next_due - time.monotonic(), 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout=timeout)
            self._event.clear()

    async def _write(self, model: ModelKey) -> None:
        namespace, name = model
        info = self.catalog.model_by_key(model)
        if info is None and model not in self._exists:
            self.tracker.models.pop(model, None)  # deleted model: its Lease went with it
            return
        demand = self.tracker.models[model]
        counts = demand.counts
        wall = time.time()
        renew = renew_time(demand, wall)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        lease = demand_lease_name(name, self.pod_name)
        try:
            if model in self._exists or info is None:
                try:
                    await self.client.request(
                        "PATCH",
                        f"{path}/{lease}",
                        lease_patch(self.pod_name, counts, renew),
                        content_type="application/merge-patch+json",
                    )
                except ApiError as error:
                    if error.status != 404 or info is None:
                        raise
                    self._exists.discard(model)
                    await self._create(path, info.uid, namespace, name, counts, renew)
            else:
                await self._create(path, info.uid, namespace, name, counts, renew)
            self._exists.add(model)
            self.tracker.wrote(model, counts, renew, time.monotonic())
            self.metrics.demand_writes.labels("ok").inc()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # retried after a pause
            log.warning("demand lease %s/%s: %s", namespace, lease, error)
            self.tracker.failed(model, time.monotonic())
            self.metrics.demand_writes.labels("error").inc()

    async def _create(
        self, path: str, uid: str, namespace: str, name: str, counts: Any, renew: float
    ) -> None:
        body = lease_body(
            namespace=namespace,
            model_name=name,
            model_uid=uid,
            pod_name=self.pod_name,
            counts=counts,
            renew_wall=renew,
        )
        try:
            await self.client.request("POST", path, body)
        except ApiError as error:
            if error.status != 409:
                raise
            await self.client.request(
                "PATCH",
                f"{path}/{body['metadata']['name']}",
                lease_patch(self.pod_name, counts, renew),
                content_type="application/merge-patch+json",
            )
