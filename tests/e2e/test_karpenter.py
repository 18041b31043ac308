"""A real node autoscaler: Karpenter launches the GPU node a waking model needs, and removes it
once the model sleeps.

Karpenter (its kwok provider, built from sigs.k8s.io/karpenter) runs with the control plane;
the NodePools are those of deploy/nodegroups/karpenter-gpu.yaml with a KWOKNodeClass
(kit/localworld/karpenter.py). A node Karpenter creates gets a process kubelet and a GPU
Feature Discovery stand-in (kit/localworld/karpenter_nodes.py): its pods are real
siesta-server processes, answering the `openai` client through the gateway.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localworld.cluster import holds, wait_for
from localworld.full_loop import Loop
from localworld.gateway_env import metric
from localworld.karpenter import (
    NodeAgent,
    Recorder,
    gpu_spec,
    karpenter_nodes,
    nodeclaims,
    nodepool,
)
from localworld.localnet import HOST_ADDRESS, ensure_pod_network
from localworld.operator_env import sts_replicas

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.llama]

# The core (a window brings a node, the node goes after it) runs in every `make test`; the
# longer ones (each waits out consolidateAfter once more) with `make test-karpenter`.
full_set_only = pytest.mark.skipif(
    os.environ.get("SIESTA_KARPENTER_ALL") != "1",
    reason="one more consolidateAfter each: run with `make test-karpenter`",
)

# An empty node lives consolidateAfter, then Karpenter's disruption loop (polls every 10 s)
# validates the decision for 15 s and deletes the NodeClaim; termination takes seconds more.
REMOVAL_BOUND_SECONDS = 45.0


def consolidate_after(pool: str) -> float:
    text = str(nodepool(pool)["spec"]["disruption"]["consolidateAfter"])
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def node_of(loop: Loop, model: str) -> str:
    pods = loop.pods(model)
    return str(pods[0]["spec"].get("nodeName") or "") if pods else ""


def stream_first_token(loop: Loop, alias: str, out: dict[str, Any]) -> None:
    """One streamed chat completion; records when the first token came (unix seconds)."""
    try:
        stream = loop.client().chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=8,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        text = ""
        for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                out.setdefault("first_token", time.time())
                text += delta
        out["text"] = text
    except Exception as error:  # reported by the test
        out["error"] = error


def test_window_opens_karpenter_launches_a_t4_node_and_removes_it_after_the_window(
    karpenter_loop: Loop, karpenter: NodeAgent
) -> None:
    loop = karpenter_loop
    # The operator's clock 15 s before a minute boundary; the window opens at that minute
    # (once a day, so it never reopens during the test) and lasts 40 s.
    offset = 45 - (time.time() % 60)
    operator_now = time.time() + offset
    opens_at = datetime.fromtimestamp(operator_now - operator_now % 60 + 60, UTC)
    window = {
        "name": "office",
        "start": f"{opens_at.minute} {opens_at.hour} * * *",
        "duration": "40s",
        "minReplicas": 1,
    }
    loop.operator_env["SIESTA_CLOCK_OFFSET_SECONDS"] = f"{offset:.3f}"
    loop.start_operator()
    loop.start_gateway()
    schedule = {"timezone": "UTC", "windows": [window]}
    with Recorder(loop.cluster, loop.namespace) as seen:
        alias = loop.add_model(
            "office",
            idle_timeout="5s",
            scale_down_delay="1s",
            extra_spec={"gpu": gpu_spec("Tesla-T4"), "schedule": schedule},
        )
        assert karpenter_nodes(loop.cluster) == []

        # (a) The window opens: the pod is Pending until Karpenter's node is there.
        wait_for("window open: 1 replica", lambda: loop.replicas("office") == 1, 40)
        window_open = opens_at.timestamp() - offset  # the wall-clock instant it opened
        answer: dict[str, Any] = {}
        request = threading.Thread(target=stream_first_token, args=(loop, alias, answer))
        request.start()
        pod = wait_for("the model's pod", lambda: loop.pods("office"), 20)[0]
        uid = pod["metadata"]["uid"]
        node = wait_for("a node launched by Karpenter", lambda: node_of(loop, "office"), 120)
        labels = seen.nodes[node]
        assert labels["karpenter.sh/nodepool"] == "gpu-t4"
        assert labels["node.kubernetes.io/instance-type"] == "g4dn.xlarge"  # the cheapest T4
        assert labels["topology.kubernetes.io/zone"] in ("us-east-1a", "us-east-1b")
        wait_for("pod Ready", lambda: seen.first(f"pod:{uid}:ready"), 60)
        request.join(timeout=120)
        assert "error" not in answer, f"{answer.get('error')}\n{loop.logs()}"
        assert answer["text"]
        # Labelled as the GPU Operator would, with the GPU allocatable.
        node_obj = loop.cluster.get_json("node", node)
        assert node_obj["metadata"]["labels"]["nvidia.com/gpu.product"] == "Tesla-T4"
        assert node_obj["metadata"]["labels"]["nvidia.com/gpu.memory"] == "15360"
        assert node_obj["status"]["allocatable"]["nvidia.com/gpu"] == "1"
        # The pod was Pending before the node existed: Karpenter launched it for this pod.
        node_seen = seen.first(f"node:{node}:seen")
        bound = seen.first(f"pod:{uid}:bound")
        assert node_seen is not None
        assert bound is not None
        assert node_seen < bound
        split = {
            "node launch (window open -> Node object)": node_seen - window_open,
            "GPU labelling (Node -> nvidia.com/gpu allocatable)": (
                (karpenter.event_time(node, "gpu-ready") or 0) - node_seen
            ),
            "pod start (GPU ready -> container running)": (
                (seen.first(f"pod:{uid}:running") or 0)
                - (karpenter.event_time(node, "gpu-ready") or 0)
            ),
            "model load (running -> Ready)": (
                (seen.first(f"pod:{uid}:ready") or 0) - (seen.first(f"pod:{uid}:running") or 0)
            ),
            "first token (Ready -> first token)": (
                answer["first_token"] - (seen.first(f"pod:{uid}:ready") or 0)
            ),
            "total (window open -> first token)": answer["first_token"] - window_open,
        }
        print("window opens -> first token:", json.dumps(split, indent=1))

        # (b) The window closes, the model idles to zero, the pod goes, then the node.
        wait_for("back to zero", lambda: loop.replicas("office") == 0, 90)
        gone = wait_for("pod gone", lambda: seen.first(f"pod:{uid}:gone"), 60)
        after = consolidate_after("gpu-t4")
        node_gone = wait_for(
            "node consolidated",
            lambda: seen.first(f"node:{node}:gone"),
            after + REMOVAL_BOUND_SECONDS + 10,
        )
    empty_for = node_gone - gone
    print(f"node {node} removed {empty_for:.1f}s after its pod (consolidateAfter {after:.0f}s)")
    assert after - 2 <= empty_for <= after + REMOVAL_BOUND_SECONDS
    assert not [c for c in nodeclaims(loop.cluster) if c["status"].get("nodeName") == node]
    # The node's kubelet stopped with it.
    wait_for("the node's kubelet stopped", lambda: karpenter.event_time(node, "gone"), 40)
    events = [e["event"] for e in karpenter.events(node)]
    assert events == ["created", "kubelet-started", "gpu-ready", "gone"]


@full_set_only
def test_night_requests_bring_each_product_its_own_node_and_only_the_sleeping_ones_goes(
    karpenter_loop: Loop, karpenter: NodeAgent
) -> None:
    loop = karpenter_loop
    loop.start_operator()
    loop.start_gateway()
    with Recorder(loop.cluster, loop.namespace) as seen:
        t4 = loop.add_model(
            "night-t4",
            wake_timeout="3m",
            idle_timeout="5s",
            scale_down_delay="1s",
            extra_spec={"gpu": gpu_spec("Tesla-T4")},
        )
        a10g = loop.add_model(
            "night-a10g", wake_timeout="3m", extra_spec={"gpu": gpu_spec("NVIDIA-A10G")}
        )

        # (c) At night both models are at zero: the gateway holds each request while
        # Karpenter launches a node for it, and answers within wakeTimeout.
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(loop.chat, alias, timeout=240) for alias in (t4, a10g)]
            for answer in answers:
                assert answer.result(timeout=240), loop.logs()
        took = time.monotonic() - started
        assert took < 180
        for alias in (t4, a10g):
            held = metric(loop.gateway.url, "siesta_gateway_hold_seconds_count", {"model": alias})
            assert held >= 1

        # (e) Each product on its own node type.
        t4_node, a10g_node = node_of(loop, "night-t4"), node_of(loop, "night-a10g")
        assert t4_node
        assert a10g_node
        assert t4_node != a10g_node
        assert seen.nodes[t4_node]["node.kubernetes.io/instance-type"] == "g4dn.xlarge"
        assert seen.nodes[a10g_node]["node.kubernetes.io/instance-type"] == "g5.xlarge"
        assert seen.nodes[a10g_node]["karpenter.sh/nodepool"] == "gpu-a10g"

        # The T4 model sleeps: its node goes, the A10G node and its model stay.
        wait_for("T4 model at zero", lambda: loop.replicas("night-t4") == 0, 60)
        wait_for(
            "T4 node consolidated",
            lambda: seen.first(f"node:{t4_node}:gone"),
            consolidate_after("gpu-t4") + REMOVAL_BOUND_SECONDS + 20,
        )
        assert seen.first(f"node:{a10g_node}:gone") is None
        assert sts_replicas(loop.cluster, "night-a10g", loop.namespace) == 1
        assert loop.chat(a10g)


class DrippingModel(http.server.ThreadingHTTPServer):
    """Serves one GGUF over HTTP slowly (evenly over `seconds`): a model download that
    keeps a pod loading for longer than the NodePool's consolidateAfter."""

    def __init__(self, address: str, gguf: Path, seconds: float) -> None:
        self.body = gguf.read_bytes()
        self.seconds = seconds
        super().__init__((address, 0), _Drip)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/tiny.gguf"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Drip(http.server.BaseHTTPRequestHandler):
    server: DrippingModel

    def do_GET(self) -> None:
        body, steps = self.server.body, 50
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        size = -(-len(body) // steps)
        for start in range(0, len(body), size):
            self.wfile.write(body[start : start + size])
            self.wfile.flush()
            time.sleep(self.server.seconds / steps)

    def log_message(self, *args: Any) -> None:
        pass


@full_set_only
def test_a_node_whose_pod_is_still_loading_is_not_consolidated(
    karpenter_loop: Loop, karpenter: NodeAgent, model_dir: Path
) -> None:
    """WhenEmpty needs no karpenter.sh/do-not-disrupt: a loading pod keeps its node non-empty.

    The model downloads for consolidateAfter + 40 s. Karpenter marks the node
    Consolidatable once consolidateAfter passed since the pod was bound, and still leaves it
    alone: a node with a pod on it is not empty, whether the pod is ready or not."""
    loop = karpenter_loop
    after = consolidate_after("gpu-t4")
    storage_class = f"siesta-static-{loop.namespace}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": storage_class},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(model_dir / "pv")},
        },
    }
    loop.cluster.apply(volume)
    ensure_pod_network()  # the pod downloads from this machine's end of it
    server = DrippingModel(HOST_ADDRESS, model_dir / "tiny.gguf", after + 40)
    try:
        loop.start_operator()
        loop.start_gateway()
        spec = {
            "gpu": gpu_spec("Tesla-T4"),
            "cache": {"size": "1Gi", "storageClassName": storage_class},
        }
        with Recorder(loop.cluster, loop.namespace) as seen:
            alias = loop.add_model("loading", uri=server.url, wake_timeout="5m", extra_spec=spec)
            answer: dict[str, Any] = {}
            request = threading.Thread(target=stream_first_token, args=(loop, alias, answer))
            request.start()
            node = wait_for("a node launched by Karpenter", lambda: node_of(loop, "loading"), 120)
            pod = loop.pods("loading")[0]
            uid = pod["metadata"]["uid"]
            wait_for("container running", lambda: seen.first(f"pod:{uid}:running"), 60)

            def consolidatable() -> bool:
                claims = [
                    c for c in nodeclaims(loop.cluster) if c["status"].get("nodeName") == node
                ]
                conditions = claims[0]["status"].get("conditions", []) if claims else []
                return any(
                    c["type"] == "Consolidatable" and c["status"] == "True" for c in conditions
                )

            # Karpenter would consolidate this node if it were empty...
            wait_for("NodeClaim Consolidatable", consolidatable, after + 30)

            # ... and through its next disruption rounds (every 10 s, 15 s validation) it
            # leaves the node alone while the pod is still loading.
            def left_alone() -> bool:
                taints = loop.cluster.get_json("node", node)["spec"].get("taints") or []
                disrupted = [t for t in taints if t["key"] == "karpenter.sh/disrupted"]
                return not disrupted and seen.first(f"node:{node}:gone") is None

            holds("Karpenter leaves the loading pod's node alone", left_alone, 30)
            assert seen.first(f"pod:{uid}:ready") is None, "the download ended too early"
            request.join(timeout=120)
            assert "error" not in answer, f"{answer.get('error')}\n{loop.logs()}"
            # The answer needed the pod Ready; the recorder polls, so it may see it a bit later.
            wait_for(
                "the recorder seeing the pod Ready", lambda: seen.first(f"pod:{uid}:ready"), 10
            )
            assert seen.first(f"pod:{uid}:gone") is None
            assert node_of(loop, "loading") == node
    finally:
        server.close()
        loop.cluster.kubectl("delete", "pv", storage_class, "--wait=false", check=False)
