"""What the operator, the gateway, the manifests and the tests must agree on (docs/contracts.md).

Every key, name and default that crosses a component boundary is spelled here once; the
others import it. Changing a value here changes the wire format: docs/contracts.md and
tests/unit/test_contract.py say what it is.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

# --- the API ---------------------------------------------------------------------------------
GROUP = "siesta.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("md",)

# --- labels and annotations ------------------------------------------------------------------
MODEL_LABEL = "siesta.dev/modeldeployment"
"""On every child, pod, Service (so its EndpointSlices) and demand Lease: the model's name."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CONFIG_HASH_ANNOTATION = "siesta.dev/config-hash"
"""On the operator's children: a hash of the manifest it last wrote."""
WAKE_RETRY_ANNOTATION = "siesta.dev/wake-retry"
"""On a ModelDeployment: a new value forgets its wake backoff (status.wakeBackoff)."""
PENDING_ANNOTATION = "siesta.dev/pending-requests"
"""On a demand Lease: requests the gateway holds for the model (waiting for a replica)."""
IN_FLIGHT_ANNOTATION = "siesta.dev/in-flight-requests"
"""On a demand Lease: requests forwarded to a replica and not yet finished."""

# --- demand Leases ---------------------------------------------------------------------------
LEASE_DURATION_SECONDS = 30
"""How long a Lease counts after its renewTime (a gateway that died stops counting)."""


def gateway_id(pod_name: str) -> str:
    """8 hex characters identifying a gateway replica (a hash of its pod name)."""
    return hashlib.sha256(pod_name.encode()).hexdigest()[:8]


def demand_lease_name(model_name: str, gateway_pod: str) -> str:
    """One Lease per (model, gateway replica), so replicas never contend."""
    return f"{model_name}-demand-{gateway_id(gateway_pod)}"


# --- status ----------------------------------------------------------------------------------
MODEL_SERVING_CONDITION = "ModelServing"
"""False while the model's replicas fail (message: the container's last words); the gateway
then answers at once with 503 and that message instead of holding requests."""

# --- the model server ------------------------------------------------------------------------
REQUIRE_GPU_ENV = "SIESTA_REQUIRE_GPU"
"""Set to "1" on the servers of GPU models: a server that would compute on the CPU (no GPU
backend, no device, too few layers offloaded, not enough GPU memory) exits 1 with its reason
instead, and the model fails toward GPU off (siesta-server's --require-gpu)."""

# --- routing ---------------------------------------------------------------------------------
HTTP_PORT_NAME = "http"
"""The model server's port name on its pods and Services (the gateway routes to it)."""
METRICS_PORT_NAME = "metrics"
"""The model server's /metrics-only port on its pods (`--metrics-port`): what Prometheus
scrapes, so a NetworkPolicy can let the scraper in without opening the API."""


def service_name(model_name: str) -> str:
    """The ClusterIP Service the gateway routes through is named like the model."""
    return model_name


# --- the CPU bridge --------------------------------------------------------------------------
BRIDGE_LABEL = "siesta.dev/bridge-for"
"""On a model's CPU bridge (its StatefulSet, Service, so its EndpointSlices, and pods): the
model's name. The bridge carries no MODEL_LABEL, so nothing that counts or prices a model's
GPU replicas (scaling, cold starts, wake stages, cost) ever sees it."""
BRIDGE_IN_FLIGHT_ANNOTATION = "siesta.dev/bridge-in-flight-requests"
"""On a demand Lease: requests forwarded to the model's bridge and not yet finished (the
bridge sleeps again only when its last stream has ended)."""
SERVED_BY_HEADER = "X-Siesta-Served-By"
"""On the gateway's responses: "gpu" (the model's own replicas) or "bridge" (its CPU bridge)."""
WAKE_SECONDS_HEADER = "X-Siesta-Wake-Seconds"
"""On a response whose request was held while its model woke: the seconds it was held."""


def bridge_name(model_name: str) -> str:
    """The bridge's StatefulSet and Service. Model names ending in -bridge are refused (CEL)."""
    return f"{model_name}-bridge"


# --- defaults both sides apply ---------------------------------------------------------------
DEFAULT_IDLE_TIMEOUT = "15m"
DEFAULT_WAKE_TIMEOUT = "10m"
DEFAULT_TARGET_PER_REPLICA = 3.0


# --- model keys ------------------------------------------------------------------------------
class ModelKey(NamedTuple):
    """A ModelDeployment's identity; `str()` gives "namespace/name", `parse` reads it back.

    A tuple, so it equals the (namespace, name) keys kopf's indexes use.
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        namespace, slash, name = text.partition("/")
        if not slash or not namespace or not name or "/" in name:
            raise ValueError(f"model key {text!r} is not namespace/name")
        return cls(namespace, name)
