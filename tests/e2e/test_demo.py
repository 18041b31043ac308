"""`make demo`, the README's main job, end to end: scripts/demo.sh up, its timeline, then down.

As a newcomer runs it: Siesta's images, a control plane with its real node, the chart installed
with helm (operator and gateway in pods on that node), the gateway's Service forwarded to this
machine, one request waking the model (SmolLM2-135M, a real one) from zero while Karpenter
launches its GPU node, a real answer from its CPU bridge within seconds, the next turns on
the bridge until the GPU replica takes over, the bridge and then the model back asleep and
the nodes removed, the wake's stages and the cost column. Then the
README's example with only its model URI changed (http:// from the demo's model host)
answers on a node Karpenter launches, its GGUF downloaded into a cache volume there. The
gateway still answers afterwards, and `make demo-down` leaves no node process behind. A
cluster of its own (`<name>-demotest`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localworld.cluster import cluster_paths
from localworld.gateway_env import get_json
from localworld.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.llama]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"

# What the timeline must say, in this order (scripts/demo.py narrates each change once; on
# the first token it reads the API first, so the pod's Ready comes before it).
TIMELINE = [
    "request sent (model 'tiny-chat', 0 replicas)",
    "demand seen: the gateway's Lease says 1 held",
    "operator scaled the StatefulSet 0 -> 1",
    "Karpenter launched node",
    "pod tiny-chat-bridge-0 ready",
    "through the gateway from the CPU bridge (X-Siesta-Served-By: bridge)",
    "GPU Operator labels set (Tesla-T4)",
    "pod tiny-chat-0 ready",
    "hand-over: a GPU replica is ready; new requests go to it",
    "through the gateway from a GPU replica (X-Siesta-Served-By: gpu)",
    "operator scaled the StatefulSet 1 -> 0",
    "pod gone: the GPU node is empty",
    "deleted: no GPU node is running",
    "==> the wake, as the operator recorded it (status.lastWake)",
]


def real_text(answer: str) -> bool:
    """English words, as a real model answers (random weights give byte soup)."""
    return answer.isascii() and len(re.findall(r"\b[A-Za-z]{2,}\b", answer)) >= 3


def demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEMO), *args], env=env, capture_output=True, text=True, timeout=1200
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def demo_env() -> Iterator[dict[str, str]]:
    name = os.environ.get("SIESTA_CLUSTER_NAME", "siesta") + "-demotest"
    env = {
        **os.environ,
        "SIESTA_CLUSTER_NAME": name,
        "GATEWAY_PORT": str(free_port()),
        "IDLE": "20s",
        # The GPU Operator stand-in takes half a minute: the CPU bridge answers first.
        "SIESTA_GPU_DELAY": "30",
    }
    yield env
    demo(env, "down")  # again, in case the test stopped before its own `down`


def test_make_demo_runs_siesta_in_pods_and_a_model_from_zero_and_back(
    demo_env: dict[str, str],
) -> None:
    result = demo(demo_env)
    out = result.stdout
    assert result.returncode == 0, f"{out[-3000:]}\n{result.stderr[-3000:]}"

    # Siesta itself runs as the chart's pods on the real node, from the images built here.
    for component in ("gateway", "operator"):
        pattern = rf"pod siesta-{component}-\S+: ready on real-0, image localhost/siesta:\w+"
        assert re.search(pattern, out), out

    places = []
    for line in TIMELINE:
        assert line in out, f"the timeline lacks {line!r}:\n{out}"
        places.append(out.index(line))
    assert places == sorted(places), f"the timeline is out of order:\n{out}"

    # The bridge answered the first turns within seconds, went back to zero after the
    # hand-over; the operator's stage timeline has the GPU stage the stand-in took.
    first = re.search(r"first token ([\d.]+)s, through the gateway from the CPU bridge", out)
    assert first, out
    assert float(first[1]) < 30, out
    # (Woken in the same step as the GPU replica: either may be seen first.)
    assert "operator woke the CPU bridge (tiny-chat-bridge 0 -> 1)" in out, out
    assert "operator scaled the bridge 1 -> 0 (its last stream ended)" in out, out
    assert re.search(r"gpuAllocatable +[23]\d\.\ds", out), out

    # `kubectl get md -A -o wide` at the end: this week's cost and savings of each model.
    assert re.search(r"tiny-chat .* ScaledToZero +\$\d+\.\d\d \(saved \$\d+\.\d\d \(\d+%\)\)", out)

    # The demo's model is a real one: asked the capital of France (greedy), it says Paris.
    answer = re.search(r"response complete: (['\"])(.*)\1\n", out)
    assert answer, out
    assert real_text(answer[2]), answer[2]
    assert "Paris" in answer[2], answer[2]

    # The README's example, only its URI changed to the demo's model host (http://), answers
    # through the gateway from a node Karpenter launched (not kwok's simulated g4dn-0), its
    # file downloaded into a cache volume of the local provisioner, pinned to the zone.
    readme = out[out.index("==> the README's example") :]
    assert re.search(r"http://10\.244\.0\.1:\d+/SmolLM2-135M-Instruct\.Q4_1\.gguf", readme)
    reply = re.search(r"answered through the gateway in [\d.]+s: (['\"])(.*)\1\n", readme)
    assert reply, readme
    assert real_text(reply[2]), reply[2]
    assert re.search(r"pod reception-7b-0 on node kwok-gpu-t4-\S+: NodePool gpu-t4, ", readme)
    pinned = r"cache volume model-cache-reception-7b-0 \(siesta-local, .*\) pinned to"
    zone = r" topology\.kubernetes\.io/zone=us-east-1\w, "
    held = r"holds: \w+-SmolLM2-135M-Instruct\.Q4_1\.gguf \(98 MB\)"
    assert re.search(pinned + zone + held, readme), readme

    # Left running for the newcomer: the forwarded gateway answers, the demo's model asleep.
    models = get_json(f"http://127.0.0.1:{demo_env['GATEWAY_PORT']}/v1/models")["data"]
    bare = {m["id"]: m["siesta"]["phase"] for m in models if "/" not in m["id"]}
    assert set(bare) == {"tiny-chat", "reception-7b"}  # and NAMESPACE/ALIAS of each
    assert bare["tiny-chat"] == "ScaledToZero"

    # `make demo-down`: the node's processes and the cluster are gone.
    cache = Path(cluster_paths()["SIESTA_CACHE"])
    run_dir = cache / "node" / demo_env["SIESTA_CLUSTER_NAME"] / "run"
    pids = [int(f.read_text()) for f in run_dir.glob("*.pid")]
    assert len(pids) >= 3, sorted(run_dir.iterdir())  # containerd, kubelet, kube-proxy, ...
    down = demo(demo_env, "down")
    assert down.returncode == 0, down.stderr[-3000:]
    assert [pid for pid in pids if alive(pid)] == []
    assert not (cache / "kwok" / "clusters" / demo_env["SIESTA_CLUSTER_NAME"]).exists()
