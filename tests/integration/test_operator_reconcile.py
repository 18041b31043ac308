"""The operator on the real control plane: children, GPU placement, status, deletion.

The operator runs as a subprocess with the token of its own ServiceAccount (RBAC from
deploy/rbac/operator-rbac.yaml), watching only the test's namespace.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localworld.cluster import Cluster, holds
from localworld.nodes import POOL_LABEL, add_node, gpu_node_manifest, remove_node
from localworld.operator_env import (
    A10G,
    T4,
    OperatorRunner,
    condition,
    demand_lease,
    get,
    model_deployment,
    scale_events,
    status,
    sts_replicas,
    wait_for,
)
from siesta.api.contract import MODEL_LABEL
from support.specs import POD_SETTINGS

pytestmark = pytest.mark.cluster

LABELS = {
    "app.kubernetes.io/name": "siesta-server",
    "app.kubernetes.io/instance": "chat",
    "app.kubernetes.io/component": "model-server",
    "app.kubernetes.io/part-of": "siesta",
    "app.kubernetes.io/managed-by": "siesta-operator",
    MODEL_LABEL: "chat",
}


def ready_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = get(cluster, "pod", name, namespace)
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return pod
    return None


def node_product(cluster: Cluster, node: str) -> str:
    return str(cluster.get_json("node", node)["metadata"]["labels"]["nvidia.com/gpu.product"])


def test_create_update_delete(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    cluster.apply(
        model_deployment("chat", gpu={"products": [T4]}, replicas={"min": 1, "max": 2}), namespace
    )

    pod = wait_for("chat-0 Ready", lambda: ready_pod(cluster, namespace, "chat-0"), timeout=60)
    assert node_product(cluster, pod["spec"]["nodeName"]) == T4
    md = cluster.get_json("modeldeployment", "chat", "-n", namespace)
    sts = cluster.get_json("statefulset", "chat", "-n", namespace)
    headless = cluster.get_json("service", "chat-pods", "-n", namespace)
    service = cluster.get_json("service", "chat", "-n", namespace)
    for child in (sts, headless, service):
        assert child["metadata"]["labels"] == LABELS
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "ModelDeployment", "chat", md["metadata"]["uid"], True,
        )  # fmt: skip
    assert headless["spec"]["clusterIP"] == "None"
    assert service["spec"]["type"] == "ClusterIP"
    assert (
        pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"
    )
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert cluster.get_json("poddisruptionbudgets", "-n", namespace)["items"] == []

    done = wait_for(
        "status Ready",
        lambda: (s := status(cluster, "chat", namespace)).get("phase") == "Ready" and s,
    )
    assert done["desiredReplicas"] == 1
    assert done["readyReplicas"] == 1
    assert done["selector"] == f"{MODEL_LABEL}=chat"
    assert done["observedGeneration"] == md["metadata"]["generation"]
    assert "replicas.min is 1" in done["reasons"]
    assert [e["reason"] for e in scale_events(cluster, "chat", namespace)] == ["ScaledUp"]
    printed = cluster.kubectl("get", "md", "chat", "-n", namespace).stdout
    assert "Ready" in printed.splitlines()[1]

    # A spec change rolls out: the template changes, and the pod is replaced once the model
    # is known to be idle (a gateway reports nothing held or in flight; kwok pods have no
    # /metrics to ask; tests/integration/test_operator_rollout.py has the busy case).
    cluster.apply(demand_lease("chat", pending=0, in_flight=0, duration=600), namespace)
    old_uid = pod["metadata"]["uid"]
    cluster.kubectl("patch", "md", "chat", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"server": {"contextSize": 8192}}}))  # fmt: skip

    def rolled() -> bool:
        new = ready_pod(cluster, namespace, "chat-0")
        if not new or new["metadata"]["uid"] == old_uid:
            return False
        env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
        return env["SIESTA_CTX_SIZE"] == "8192"

    wait_for("the new pod with contextSize 8192", rolled, timeout=90)
    assert sts_replicas(cluster, "chat", namespace) == 1
    wait_for(
        "observedGeneration to follow",
        lambda: status(cluster, "chat", namespace).get("observedGeneration") == 2,
    )

    # Someone deletes a child: it comes back.
    cluster.kubectl("delete", "service", "chat", "-n", namespace)
    wait_for("Service chat re-created", lambda: get(cluster, "service", "chat", namespace))

    cluster.kubectl("delete", "md", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for("the StatefulSet gone", lambda: get(cluster, "statefulset", "chat", namespace) is None)
    wait_for(
        "the Services gone", lambda: not cluster.get_json("services", "-n", namespace)["items"]
    )


@pytest.mark.parametrize(("products", "expected"), [(["nvidia-a10g"], A10G), (["TESLA-T4"], T4)])
def test_gpu_products_pick_the_node_pool(
    cluster: Cluster,
    namespace: str,
    operator_runner: OperatorRunner,
    products: list[str],
    expected: str,
) -> None:
    operator_runner.start()
    cluster.apply(
        model_deployment("gpu", gpu={"products": products}, replicas={"min": 1, "max": 1}),
        namespace,
    )
    pod = wait_for("gpu-0 Ready", lambda: ready_pod(cluster, namespace, "gpu-0"), timeout=60)
    assert node_product(cluster, pod["spec"]["nodeName"]) == expected
    cluster.kubectl("delete", "md", "gpu", "-n", namespace, "--wait=true", "--timeout=60s")


def test_pod_pending_for_a_gpu_is_waiting_and_not_scaled_away(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    group = f"gpu-{namespace}"[:63]
    operator_runner.start()
    spec = {
        "gpu": {"products": [T4], "nodeSelector": {POOL_LABEL: group}},
        "replicas": {"min": 0, "max": 1},
        "scaling": {"idleTimeout": "2s", "scaleDownDelay": "1s"},
    }
    cluster.apply(model_deployment("late", **spec), namespace)
    # A request arrives: the gateway's Lease (short-lived) wakes the model.
    cluster.apply(demand_lease("late", pending=1, duration=2), namespace)
    waiting = wait_for(
        "phase WaitingForGPU",
        lambda: (s := status(cluster, "late", namespace)).get("phase") == "WaitingForGPU" and s,
        timeout=30,
    )
    assert "waiting for a GPU node" in waiting["reason"]
    ready = condition(cluster, "late", namespace, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForGPU")
    # Demand is gone and the idle timeout has long passed: the pending pod stays.
    cluster.kubectl("delete", "lease", demand_lease("late")["metadata"]["name"], "-n", namespace)
    # The idle decision has been made (it would scale down) and is held by the starting pod:
    wait_for(
        "the scale-down held by the starting pod",
        lambda: any(
            "still starting or loading" in r for r in status(cluster, "late", namespace)["reasons"]
        ),
        timeout=30,
    )
    holds(
        "1 replica, WaitingForGPU",
        lambda: (
            sts_replicas(cluster, "late", namespace) == 1
            and status(cluster, "late", namespace)["phase"] == "WaitingForGPU"
        ),
        seconds=4,
    )

    # The node group scales up: the pod lands and becomes ready; the model has been idle far
    # longer than idleTimeout, so it goes to sleep at once, with its cold start measured.
    node = add_node(
        cluster.kubeconfig, gpu_node_manifest(f"{namespace}-g4dn"[:63], "g4dn", nodegroup=group)
    )
    try:
        wait_for(
            "scaled to zero after the start",
            lambda: sts_replicas(cluster, "late", namespace) == 0,
            timeout=60,
        )
        final = wait_for(
            "phase ScaledToZero",
            lambda: (s := status(cluster, "late", namespace)).get("phase") == "ScaledToZero" and s,
        )
        assert final["coldStart"]["pendingSeconds"] >= 5  # it waited for the node
        assert final["coldStart"]["lastSeconds"] >= final["coldStart"]["pendingSeconds"]
        assert [e["reason"] for e in scale_events(cluster, "late", namespace)] == [
            "ScaledUp",
            "ScaledDown",
        ]
    finally:
        cluster.kubectl(
            "delete", "md", "late", "-n", namespace, "--wait=true", "--timeout=60s", check=False
        )
        remove_node(cluster.kubeconfig, node)


def test_invalid_time_zone_is_a_condition_and_others_carry_on(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    running = operator_runner.start()
    windows = [{"name": "day", "start": "0 8 * * *", "duration": "10h", "minReplicas": 1}]
    cluster.apply(
        model_deployment(
            "mars", gpu={"count": 0}, schedule={"timezone": "Mars/Olympus_Mons", "windows": windows}
        ),
        namespace,
    )
    cluster.apply(
        model_deployment("earth", gpu={"count": 0}, replicas={"min": 1, "max": 1}), namespace
    )
    invalid = wait_for(
        "ScheduleValid=False",
        lambda: (
            (c := condition(cluster, "mars", namespace, "ScheduleValid"))
            and c["status"] == "False"
            and c
        ),
    )
    assert invalid["reason"] == "InvalidSchedule"
    assert (
        invalid["message"]
        == "unknown time zone 'Mars/Olympus_Mons': use an IANA name such as Europe/Berlin"
    )
    assert status(cluster, "mars", namespace)["phase"] == "Degraded"
    wait_for(
        "the other model Ready", lambda: status(cluster, "earth", namespace).get("phase") == "Ready"
    )
    assert running.metric_sum("siesta_operator_reconcile_errors_total") == 0
    assert running.proc.alive()


def test_manual_override_pins_replicas_then_expires(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    spec = {
        "gpu": {"count": 0},
        "replicas": {"min": 0, "max": 3},
        "scaling": {"overrideDuration": "4s", "idleTimeout": "1s", "scaleDownDelay": "1s"},
    }
    cluster.apply(model_deployment("manual", **spec), namespace)
    wait_for(
        "status written",
        lambda: status(cluster, "manual", namespace).get("phase") == "ScaledToZero",
    )
    cluster.kubectl("scale", "md/manual", "-n", namespace, "--replicas=2")
    pinned = wait_for(
        "manual override in status",
        lambda: (s := status(cluster, "manual", namespace)).get("manualOverride") and s,
    )
    assert pinned["manualOverride"]["replicas"] == 2
    assert pinned["reason"].startswith("manual override (kubectl scale): 2 replicas")
    wait_for("2 replicas", lambda: sts_replicas(cluster, "manual", namespace) == 2)
    # The override ends: spec.manualReplicas is cleared and the policy takes over again.
    wait_for(
        "spec.manualReplicas cleared",
        lambda: "manualReplicas" not in cluster.get_json("md", "manual", "-n", namespace)["spec"],
        timeout=30,
    )
    wait_for("back to zero", lambda: sts_replicas(cluster, "manual", namespace) == 0, timeout=30)


def test_owned_objects_the_api_server_refuses_are_reported_in_status(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    # A namespace quota that allows no Services: the operator cannot create the model's
    # Services, and must say so where users look (status), not only in its log.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-services"},
        "spec": {"hard": {"services": "0"}},
    }
    cluster.apply(quota, namespace)
    operator_runner.start()
    cluster.apply(model_deployment("boxed", gpu={"count": 0}), namespace)
    refused = wait_for(
        "ChildrenReady=False",
        lambda: (
            (c := condition(cluster, "boxed", namespace, "ChildrenReady"))
            and c["status"] == "False"
            and c
        ),
    )
    assert refused["reason"] == "ApplyFailed"
    assert refused["message"].startswith("403 ")
    assert "exceeded quota: no-services" in refused["message"]
    current = status(cluster, "boxed", namespace)
    assert current["phase"] == "Degraded"
    assert current["reason"].startswith("cannot apply owned objects: 403 ")

    # Lifting the quota lets the next attempt through, and the condition goes.
    cluster.kubectl("delete", "resourcequota", "no-services", "-n", namespace)
    wait_for(
        "the model's Service",
        lambda: get(cluster, "service", "boxed", namespace) is not None,
        timeout=90,
    )
    wait_for(
        "ChildrenReady gone",
        lambda: condition(cluster, "boxed", namespace, "ChildrenReady") is None,
        timeout=30,
    )
    assert status(cluster, "boxed", namespace)["phase"] == "ScaledToZero"


def test_an_immutable_change_recreates_the_statefulset_without_scaling(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    spec = {
        "model": {"uri": "https://models.example.com/m.gguf"},  # a download: a cache volume
        "gpu": {"count": 0},
        "replicas": {"min": 1, "max": 1},
        "cache": {"size": "20Gi"},
    }
    cluster.apply(model_deployment("grow", **spec), namespace)
    wait_for("1 replica", lambda: sts_replicas(cluster, "grow", namespace) == 1)
    before = cluster.get_json("statefulset", "grow", "-n", namespace)

    # The claim template cannot change in place: the operator re-creates the StatefulSet.
    cluster.apply(model_deployment("grow", **{**spec, "cache": {"size": "30Gi"}}), namespace)

    def recreated() -> dict[str, Any] | None:
        found = get(cluster, "statefulset", "grow", namespace)
        if found and found["metadata"]["uid"] != before["metadata"]["uid"]:
            return found
        return None

    after = wait_for("a new StatefulSet", recreated)
    (template,) = after["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"] == "30Gi"
    assert after["spec"]["replicas"] == 1
    assert len(scale_events(cluster, "grow", namespace)) == 1  # only the first 0 -> 1


def test_every_pod_setting_reaches_the_statefulset(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    pod = POD_SETTINGS
    operator_runner.start()
    body = model_deployment("dressed", pod=pod)
    body["spec"]["model"] = {"uri": "s3://clinic-models/llama/7b.gguf"}
    cluster.apply(body, namespace)
    sts = wait_for("the StatefulSet", lambda: get(cluster, "statefulset", "dressed", namespace))
    template = sts["spec"]["template"]
    spec = template["spec"]
    server = spec["containers"][0]
    assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert (
        template["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"]
        == "true"
    )
    assert template["metadata"]["labels"]["cost-center"] == "reception"
    assert template["metadata"]["labels"][MODEL_LABEL] == "dressed"
    env = {e["name"]: e for e in server["env"]}
    assert env["AWS_REGION"]["value"] == "eu-central-1"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert env["SIESTA_MODEL"]["value"] == "s3://clinic-models/llama/7b.gguf"
    assert server["envFrom"] == [{"configMapRef": {"name": "proxy"}}]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["priorityClassName"] == "models"
    assert spec["serviceAccountName"] == "siesta-models"
    assert spec["nodeSelector"] == {"karpenter.sh/capacity-type": "on-demand"}
    assert {"name": "keys", "secret": {"secretName": "server-keys", "defaultMode": 420}} in spec[
        "volumes"
    ]
    assert {"name": "keys", "mountPath": "/etc/siesta/keys", "readOnly": True} in server[
        "volumeMounts"
    ]
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["model-cache"]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
