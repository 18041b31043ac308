"""`make demo`, the README's main job, end to end: scripts/demo.sh up, its timeline, then down.

As a newcomer runs it: Siesta's images, a control plane with its real node, the chart installed
with helm (operator and gateway in pods on that node), the gateway's Service forwarded to this
machine, one request waking the model from zero while Karpenter launches its GPU node, the
model back asleep and the node removed; the gateway still answers afterwards, and
`make demo-down` leaves no node process behind. A cluster of its own (`<name>-demotest`).
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
    "GPU Operator labels set (Tesla-T4)",
    "pod tiny-chat-0 ready",
    "first token received through the gateway",
    "operator scaled the StatefulSet 1 -> 0",
    "pod gone: the GPU node is empty",
    "deleted: no GPU node is running",
]


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
        "IDLE": "10s",
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

    # Left running for the newcomer: the forwarded gateway answers, the model asleep.
    models = get_json(f"http://127.0.0.1:{demo_env['GATEWAY_PORT']}/v1/models")["data"]
    bare = [(m["id"], m["siesta"]["phase"]) for m in models if "/" not in m["id"]]
    assert bare == [("tiny-chat", "ScaledToZero")]  # and NAMESPACE/tiny-chat

    # `make demo-down`: the node's processes and the cluster are gone.
    cache = Path(cluster_paths()["SIESTA_CACHE"])
    run_dir = cache / "node" / demo_env["SIESTA_CLUSTER_NAME"] / "run"
    pids = [int(f.read_text()) for f in run_dir.glob("*.pid")]
    assert len(pids) >= 3, sorted(run_dir.iterdir())  # containerd, kubelet, kube-proxy, ...
    down = demo(demo_env, "down")
    assert down.returncode == 0, down.stderr[-3000:]
    assert [pid for pid in pids if alive(pid)] == []
    assert not (cache / "kwok" / "clusters" / demo_env["SIESTA_CLUSTER_NAME"]).exists()
