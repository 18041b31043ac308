"""What a ModelDeployment owns, as plain manifests: pure functions of (model, settings).

The StatefulSet, its headless Service and the ClusterIP Service the gateway routes through
(names and labels in docs/contracts.md). Each manifest carries a hash of itself in the
annotation `siesta.dev/config-hash`, so keeping children in step is a comparison of two
strings, not a field-by-field diff against server-side defaults.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from siesta.api.contract import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    HTTP_PORT_NAME,
    KIND,
    MANAGED_BY_LABEL,
    METRICS_PORT_NAME,
    MODEL_LABEL,
    REQUIRE_GPU_ENV,
    service_name,
)
from siesta.api.models import OWNED_ENV, ModelDeploymentSpec
from siesta.operator.settings import OperatorSettings

Manifest = dict[str, Any]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
CONTAINER_NAME = "server"
HTTP_PORT = 8080
METRICS_PORT = 9090
CACHE_VOLUME = "model-cache"
CACHE_DIR = "/models"
SOURCE_DIR = "/model-source"
# A big GGUF download plus load may take long; the startup probe allows up to an hour.
# Probed every second: a held request waits for the first success, and /health is cheap.
STARTUP_PROBE_PERIOD = 1
STARTUP_PROBE_FAILURES = 3600
# Endpoints need a moment to drop a terminating pod before the server stops accepting.
PRESTOP_SLEEP_SECONDS = 5
SERVER_UID = 10001

DEFAULT_GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# nvidia.com/gpu.product values as GPU Feature Discovery reports them on common instances.
KNOWN_GPU_PRODUCTS = (
    "Tesla-T4",
    "Tesla-V100-SXM2-16GB",
    "Tesla-V100-SXM2-32GB",
    "Tesla-K80",
    "Tesla-M60",
    "NVIDIA-A10G",
    "NVIDIA-L4",
    "NVIDIA-L40S",
    "NVIDIA-A100-SXM4-40GB",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-H100-80GB-HBM3",
)


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment the children belong to."""

    name: str
    namespace: str
    uid: str


def labels(name: str) -> dict[str, str]:
    """Recommended labels on every child and on the pods (docs/contracts.md)."""
    return {
        "app.kubernetes.io/name": "siesta-server",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "siesta",
        MANAGED_BY_LABEL: "siesta-operator",
        MODEL_LABEL: name,
    }


def selector_labels(name: str) -> dict[str, str]:
    """The StatefulSet selector (immutable, so as small as possible)."""
    return {"app.kubernetes.io/name": "siesta-server", MODEL_LABEL: name}


def status_selector(name: str) -> str:
    return f"{MODEL_LABEL}={name}"


def headless_service_name(name: str) -> str:
    return f"{name}-pods"


def product_variants(products: list[str]) -> list[str]:
    """Node label values that match the products without regard to case.

    Node affinity compares exactly, so list the given spelling, its upper- and lower-case
    forms and every known GFD spelling that equals it case-insensitively.
    """
    found: list[str] = []
    for product in products:
        known = [k for k in KNOWN_GPU_PRODUCTS if k.casefold() == product.casefold()]
        for variant in (product, *known, product.upper(), product.lower()):
            if variant not in found:
                found.append(variant)
    return found


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def config_hash(manifest: Manifest) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(manifest: Manifest) -> Manifest:
    digest = config_hash(manifest)
    stamped = copy.deepcopy(manifest)
    stamped["metadata"].setdefault("annotations", {})[CONFIG_HASH_ANNOTATION] = digest
    return stamped


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner_reference(owner)],
    }


def _quantities(values: dict[str, int | str] | None) -> dict[str, str]:
    return {key: str(value) for key, value in (values or {}).items()}


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    given = spec.server.resources
    requests = _quantities(given.requests if given else None)
    limits = _quantities(given.limits if given else None)
    if spec.gpu.count > 0:
        # Extended resources: the limit implies an equal request.
        limits[GPU_RESOURCE] = str(spec.gpu.count)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _affinity(spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    if spec.gpu.count == 0:
        return None
    expressions: list[dict[str, Any]] = [
        {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}
    ]
    if spec.gpu.products:
        expressions.append(
            {
                "key": GPU_PRODUCT_LABEL,
                "operator": "In",
                "values": product_variants(spec.gpu.products),
            }
        )
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }


def _tolerations(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    if spec.gpu.tolerations is not None:
        return [t.model_dump(by_alias=True, exclude_none=True) for t in spec.gpu.tolerations]
    return [dict(DEFAULT_GPU_TOLERATION)] if spec.gpu.count > 0 else []


REMOTE_SCHEMES = ("http://", "https://", "s3://", "hf://")


def model_source_kind(uri: str) -> str:
    """'remote' (downloaded into the cache volume), 'pvc' or 'local' (inside the image)."""
    if uri.startswith("pvc://"):
        return "pvc"
    if uri.startswith(REMOTE_SCHEMES):
        return "remote"
    return "local"


def _pvc_source(uri: str) -> tuple[str, str]:
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def _uris(spec: ModelDeploymentSpec) -> list[str]:
    """Every file the server reads: the model, then its LoRA adapters."""
    return [spec.model.uri, *(adapter.uri for adapter in spec.adapters)]


def _claims(spec: ModelDeploymentSpec) -> list[str]:
    """The PersistentVolumeClaims that files come from, each mounted once, in order."""
    claims: list[str] = []
    for uri in _uris(spec):
        if model_source_kind(uri) == "pvc" and _pvc_source(uri)[0] not in claims:
            claims.append(_pvc_source(uri)[0])
    return claims


def _source_mount(index: int) -> tuple[str, str]:
    """(volume name, mount path) of the index-th claim; the first keeps the historic names."""
    if index == 0:
        return "model-source", SOURCE_DIR
    return f"model-source-{index}", f"{SOURCE_DIR}-{index}"


def _server_path(uri: str, claims: list[str]) -> str:
    """What the server is given for a URI: pvc:// becomes the path where the claim is mounted."""
    if model_source_kind(uri) != "pvc":
        return uri
    claim, path = _pvc_source(uri)
    return f"{_source_mount(claims.index(claim))[1]}/{path}"


def _adapter_args(spec: ModelDeploymentSpec) -> list[str]:
    claims = _claims(spec)
    args: list[str] = []
    for adapter in spec.adapters:
        args += ["--lora", f"{adapter.name}={_server_path(adapter.uri, claims)}@{adapter.scale:g}"]
        if adapter.sha256:
            args += ["--lora-sha256", f"{adapter.name}={adapter.sha256.lower()}"]
    return args


def _environment(
    owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings
) -> list[dict[str, str]]:
    model = _server_path(spec.model.uri, _claims(spec))
    values = {
        "SIESTA_MODEL": model,
        "SIESTA_SHA256": spec.model.sha256 or "",
        "SIESTA_ALIAS": spec.model.alias or owner.name,
        "SIESTA_HOST": "0.0.0.0",
        "SIESTA_PORT": str(HTTP_PORT),
        "SIESTA_METRICS_PORT": str(METRICS_PORT),
        "SIESTA_CTX_SIZE": str(spec.server.context_size),
        "SIESTA_PARALLEL": str(spec.server.parallel),
        "SIESTA_GPU_LAYERS": str(spec.server.gpu_layers if spec.gpu.count > 0 else 0),
        "SIESTA_CACHE_DIR": CACHE_DIR,
        "SIESTA_DRAIN_TIMEOUT": str(int(settings.drain_timeout.total_seconds())),
        # A GPU model never computes on the CPU: its server exits instead (docs/server.md).
        REQUIRE_GPU_ENV: "1" if spec.gpu.count > 0 and spec.server.gpu_layers != 0 else "",
    }
    assert set(values) <= set(OWNED_ENV), "OWNED_ENV lists what spec.pod.env may not set"
    owned = [{"name": key, "value": value} for key, value in values.items() if value != ""]
    added = [variable.model_dump(by_alias=True, exclude_none=True) for variable in spec.pod.env]
    return owned + added


def _volumes(
    owner: Owner, spec: ModelDeploymentSpec
) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """(pod volumes, container mounts, volumeClaimTemplates)."""
    volumes: list[Manifest] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]
    mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}]
    templates: list[Manifest] = []
    for index, claim in enumerate(_claims(spec)):
        name, path = _source_mount(index)
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": name, "mountPath": path, "readOnly": True})
    if any(model_source_kind(uri) == "remote" for uri in _uris(spec)):
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(spec.cache.size)}},
        }
        if spec.cache.storage_class_name:
            claim_spec["storageClassName"] = spec.cache.storage_class_name
        templates.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": CACHE_VOLUME, "labels": labels(owner.name)},
                "spec": claim_spec,
            }
        )
        mounts.append({"name": CACHE_VOLUME, "mountPath": CACHE_DIR})
    else:
        # Nothing is downloaded, but the server still needs a writable cache directory.
        volumes.append(
            {"name": CACHE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
        )
        mounts.append({"name": CACHE_VOLUME, "mountPath": CACHE_DIR})
    volumes.extend(volume.model_dump(by_alias=True) for volume in spec.pod.volumes)
    mounts.extend(
        mount.model_dump(by_alias=True, exclude_none=True) for mount in spec.pod.volume_mounts
    )
    return volumes, mounts, templates


def server_image(spec: ModelDeploymentSpec, settings: OperatorSettings) -> str:
    """The model's own image, else the CUDA build for GPU models and the CPU build for others."""
    if spec.server.image:
        return spec.server.image
    return settings.server_cuda_image if spec.gpu.count > 0 else settings.server_image


def _container(
    owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings, mounts: list[Manifest]
) -> Manifest:
    health = {"path": "/health", "port": HTTP_PORT_NAME}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": server_image(spec, settings),
        "args": [*_adapter_args(spec), *spec.server.extra_args],
        "env": _environment(owner, spec, settings),
        "ports": [
            {"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(spec),
        "volumeMounts": mounts,
        # Loading a model (download included) may take long: the startup probe allows it and
        # holds back the liveness probe, so a loading pod is never killed.
        "startupProbe": {
            "httpGet": health,
            "periodSeconds": STARTUP_PROBE_PERIOD,
            "failureThreshold": STARTUP_PROBE_FAILURES,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": health,
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 5,
        },
        # After startup only a dead process fails this (503 while draining is not death).
        "livenessProbe": {
            "tcpSocket": {"port": HTTP_PORT_NAME},
            "periodSeconds": 20,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        # The server writes why it exited to /dev/termination-log; anything else that kills
        # it (a crash in native code, OOM) leaves the end of its log as the message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if not container["args"]:
        del container["args"]
    if spec.pod.env_from:
        container["envFrom"] = [
            source.model_dump(by_alias=True, exclude_none=True) for source in spec.pod.env_from
        ]
    return container


def _add_pod_settings(pod_spec: Manifest, spec: ModelDeploymentSpec) -> None:
    """spec.pod's pod-level fields (the rest go to the container and the template's metadata)."""
    pod = spec.pod
    if pod.service_account_name:
        # IRSA and EKS Pod Identity mount their own token; the Kubernetes API token stays out.
        pod_spec["serviceAccountName"] = pod.service_account_name
    pod_spec["automountServiceAccountToken"] = pod.automount_service_account_token
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [ref.model_dump() for ref in pod.image_pull_secrets]


def statefulset(owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings) -> Manifest:
    """The model server StatefulSet. `spec.replicas` is 0 here: replicas go through /scale."""
    volumes, mounts, templates = _volumes(owner, spec)
    pod_spec: Manifest = {
        "terminationGracePeriodSeconds": int(settings.drain_timeout.total_seconds())
        + PRESTOP_SLEEP_SECONDS
        + 10,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            # The server image's own user (server/Dockerfile); fsGroup makes the cache
            # volume writable for it.
            "runAsUser": SERVER_UID,
            "runAsGroup": SERVER_UID,
            "fsGroup": SERVER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(owner, spec, settings, mounts)],
        "volumes": volumes,
    }
    affinity = _affinity(spec)
    if affinity:
        pod_spec["affinity"] = affinity
    node_selector = {**spec.pod.node_selector, **spec.gpu.node_selector}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    _add_pod_settings(pod_spec, spec)
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(owner, owner.name),
        "spec": {
            "replicas": 0,
            "serviceName": headless_service_name(owner.name),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(owner.name)},
            # A new template never restarts a serving pod: the operator replaces old pods
            # when they are idle (siesta.operator.rollout).
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenScaled": spec.cache.when_scaled,
                "whenDeleted": "Delete",
            },
            "template": {
                "metadata": {
                    # Siesta's own keys last: they win (the API refuses conflicts anyway).
                    "labels": {**spec.pod.labels, **labels(owner.name)},
                    # GPU nodes must be able to go away when the model sleeps: no PDB, and
                    # the memory-backed scratch volumes must not block the autoscaler.
                    "annotations": {**spec.pod.annotations, SAFE_TO_EVICT: "true"},
                },
                "spec": pod_spec,
            },
        },
    }
    if templates:
        body["spec"]["volumeClaimTemplates"] = templates
    return with_hash(body)


def headless_service(owner: Owner) -> Manifest:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(owner, headless_service_name(owner.name)),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": selector_labels(owner.name),
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": HTTP_PORT,
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def service(owner: Owner) -> Manifest:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(owner, service_name(owner.name)),
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(owner.name),
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": HTTP_PORT,
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def network_policy(owner: Owner, rules: Manifest) -> Manifest:
    """The model's pods accept and open only the connections `rules` allows (the chart's
    networkPolicy values: from the gateway, the operator and the metrics scraper; to DNS and
    the model sources). One per model, so every namespace that holds models is covered."""
    return with_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(owner, f"{owner.name}-model-server"),
            "spec": {"podSelector": {"matchLabels": selector_labels(owner.name)}, **rules},
        }
    )


def gateway_lease_binding(owner: Owner, role: str, account: tuple[str, str]) -> Manifest:
    """Lets the gateway's ServiceAccount write demand Leases in the model's namespace only:
    a RoleBinding to the chart's Lease ClusterRole (the operator may bind that role alone)."""
    return with_hash(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(owner, f"{owner.name}-gateway-leases"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "namespace": account[0], "name": account[1]}],
        }
    )


def children(owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings) -> list[Manifest]:
    """Everything the model owns, in the order to create it (the pods' NetworkPolicy before
    the pods)."""
    found = [headless_service(owner), service(owner)]
    if settings.model_network_policy is not None:
        found.append(network_policy(owner, dict(settings.model_network_policy)))
    if settings.gateway_lease_role and settings.gateway_account is not None:
        found.append(
            gateway_lease_binding(owner, settings.gateway_lease_role, settings.gateway_account)
        )
    return [*found, statefulset(owner, spec, settings)]


# Fields of a StatefulSet the API server refuses to change: a change means re-creating it
# (pods are orphaned and adopted again, so they keep running).
STATEFULSET_IMMUTABLE_FIELDS = (
    "serviceName",
    "podManagementPolicy",
    "selector",
    "volumeClaimTemplates",
)


def immutable_fields_differ(desired: Manifest, existing_spec: dict[str, Any]) -> bool:
    """Whether `desired` changes a field that cannot be updated in place."""
    wanted = desired["spec"]
    for name in ("serviceName", "podManagementPolicy"):
        if wanted.get(name) != existing_spec.get(name):
            return True
    if wanted["selector"] != existing_spec.get("selector"):
        return True
    existing_templates = existing_spec.get("volumeClaimTemplates") or []
    wanted_templates = wanted.get("volumeClaimTemplates") or []
    if len(existing_templates) != len(wanted_templates):
        return True
    for mine, theirs in zip(wanted_templates, existing_templates, strict=True):
        if mine["metadata"]["name"] != theirs.get("metadata", {}).get("name"):
            return True
        their_spec = theirs.get("spec", {})
        if mine["spec"]["resources"] != their_spec.get("resources"):
            return True
        if mine["spec"].get("storageClassName") not in (None, their_spec.get("storageClassName")):
            return True
    return False
