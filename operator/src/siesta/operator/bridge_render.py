"""A model's CPU bridge as plain manifests (docs/bridge.md): pure functions of (model, settings).

The bridge is a StatefulSet of at most one CPU replica and a ClusterIP Service, both named
`bridge_name(model)`, plus a NetworkPolicy for its pods when the chart sets one for model
pods. Everything carries BRIDGE_LABEL and never MODEL_LABEL: its pods match neither the
model's StatefulSet nor its Services, and nothing that counts or prices GPU replicas sees it.
The server is the model's own (same alias, adapters and extra flags) on the CPU image: no
GPU resources, no GPU layers, no SIESTA_REQUIRE_GPU.
"""

from __future__ import annotations

from typing import Any

from siesta.api.contract import (
    BRIDGE_LABEL,
    CONFIG_HASH_ANNOTATION,
    HTTP_PORT_NAME,
    MANAGED_BY_LABEL,
    REQUIRE_GPU_ENV,
    bridge_name,
)
from siesta.api.models import (
    DEFAULT_BRIDGE_REQUESTS,
    BridgeSettings,
    ModelDeploymentSpec,
    ModelSource,
    ResourceRequirements,
)
from siesta.operator import render
from siesta.operator.render import Manifest, Owner
from siesta.operator.settings import OperatorSettings

BRIDGE_APP = "siesta-bridge"
THREADS_FLAG = "--threads"


def bridge_labels(model: str) -> dict[str, str]:
    """On every bridge object and pod: the model's name under BRIDGE_LABEL, never MODEL_LABEL."""
    return {
        "app.kubernetes.io/name": BRIDGE_APP,
        "app.kubernetes.io/instance": model,
        "app.kubernetes.io/component": "cpu-bridge",
        "app.kubernetes.io/part-of": "siesta",
        MANAGED_BY_LABEL: "siesta-operator",
        BRIDGE_LABEL: model,
    }


def bridge_selector_labels(model: str) -> dict[str, str]:
    """The bridge StatefulSet's selector: disjoint from the model's (another app name)."""
    return {"app.kubernetes.io/name": BRIDGE_APP, BRIDGE_LABEL: model}


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": bridge_labels(owner.name),
        "ownerReferences": [render.owner_reference(owner)],
    }


def bridge_spec(spec: ModelDeploymentSpec, bridge: BridgeSettings) -> ModelDeploymentSpec:
    """The model's spec as the bridge runs it: its file, context, resources and pool, on the
    CPU (gpu.count 0 makes render pick the CPU image, no GPU resources, layers or check)."""
    source = spec.model
    if bridge.uri is not None:
        source = ModelSource(uri=bridge.uri, sha256=bridge.sha256, alias=spec.model.alias)
    elif bridge.sha256 is not None:
        source = spec.model.model_copy(update={"sha256": bridge.sha256})
    extra_args = [*spec.server.extra_args]
    if bridge.threads is not None and THREADS_FLAG not in extra_args:
        extra_args += [THREADS_FLAG, str(bridge.threads)]
    server = spec.server.model_copy(
        update={
            # The model's own image is a CUDA build more often than not: the bridge takes the
            # operator's CPU image (render.server_image for gpu.count 0).
            "image": None,
            "gpu_layers": 0,
            "context_size": bridge.context_size or spec.server.context_size,
            "extra_args": extra_args,
            "resources": bridge.resources
            or ResourceRequirements(requests=dict(DEFAULT_BRIDGE_REQUESTS)),
        }
    )
    gpu = spec.gpu.model_copy(
        update={
            "count": 0,
            "products": [],
            "node_selector": dict(bridge.node_selector),
            "tolerations": list(bridge.tolerations),
        }
    )
    # spec.pod's nodeSelector names the GPU pool's nodes; the bridge runs in a CPU pool.
    pod = spec.pod.model_copy(update={"node_selector": {}})
    return spec.model_copy(update={"model": source, "server": server, "gpu": gpu, "pod": pod})


def statefulset(owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings) -> Manifest:
    """The bridge StatefulSet (replicas 0 here: they go through /scale like the model's)."""
    assert spec.bridge is not None
    name = bridge_name(owner.name)
    base = render.statefulset(owner, bridge_spec(spec, spec.bridge), settings)
    body = _without_hash(base)
    body["metadata"] = _metadata(owner, name)
    body["spec"]["serviceName"] = name
    body["spec"]["selector"] = {"matchLabels": bridge_selector_labels(owner.name)}
    template = body["spec"]["template"]
    template["metadata"]["labels"] = {**spec.pod.labels, **bridge_labels(owner.name)}
    # A wake usually lands on a CPU node that has just joined (or that other work filled and
    # emptied since): a volume claim would pin the bridge to one zone and attach slowly, so
    # the download goes to node-local scratch space that goes away with the pod.
    body["spec"].pop("volumeClaimTemplates", None)
    body["spec"].pop("persistentVolumeClaimRetentionPolicy", None)
    volumes = template["spec"]["volumes"]
    if not any(volume["name"] == render.CACHE_VOLUME for volume in volumes):
        volumes.append({"name": render.CACHE_VOLUME, "emptyDir": {}})
    container = template["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != REQUIRE_GPU_ENV]
    return render.with_hash(body)


def service(owner: Owner) -> Manifest:
    """The ClusterIP Service the gateway reaches the bridge through (its EndpointSlices carry
    BRIDGE_LABEL)."""
    return render.with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(owner, bridge_name(owner.name)),
            "spec": {
                "type": "ClusterIP",
                "selector": bridge_selector_labels(owner.name),
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": render.HTTP_PORT,
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def network_policy(owner: Owner, rules: Manifest) -> Manifest:
    """The same rules as the model's pods get (from the gateway, the operator and the metrics
    scraper; to DNS and the model sources), for the bridge's pods."""
    return render.with_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(owner, bridge_name(owner.name)),
            "spec": {"podSelector": {"matchLabels": bridge_selector_labels(owner.name)}, **rules},
        }
    )


def children(owner: Owner, spec: ModelDeploymentSpec, settings: OperatorSettings) -> list[Manifest]:
    """The bridge's objects in creation order (its pods' NetworkPolicy before the pods); none
    without spec.bridge."""
    if spec.bridge is None:
        return []
    found = [service(owner)]
    if settings.model_network_policy is not None:
        found.append(network_policy(owner, dict(settings.model_network_policy)))
    return [*found, statefulset(owner, spec, settings)]


def _without_hash(manifest: Manifest) -> Manifest:
    annotations = manifest["metadata"].get("annotations") or {}
    annotations.pop(CONFIG_HASH_ANNOTATION, None)
    if not annotations:
        manifest["metadata"].pop("annotations", None)
    return manifest
