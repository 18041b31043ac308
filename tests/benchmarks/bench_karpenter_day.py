"""Benchmark: GPU node-seconds of a compressed office day with Karpenter, against the simulator.

A short office day runs through the real loop (control plane, Karpenter's kwok provider with
the documented NodePools, the GPU Operator stand-in, process kubelets, `siesta operator`,
`siesta gateway`, the `openai` client) and then through `siesta simulate` with the same
ModelDeployment, the requests as they were sent (a trace) and a world whose node
provisioning and model load times are the ones measured in the run and whose autoscaler is
Karpenter (consolidateAfter as in the NodePool). It prints node-seconds and cost for both
and the simulator's error. A script, not a test (about 12 minutes):

    make cluster-up && PYTHONPATH=kit:tests .venv/bin/python tests/benchmarks/bench_karpenter_day.py

The day, in minutes after the next full minute B (real time: the gateway's activity
timestamps and the operator's clock must agree, so no clock offset): a night request at
B-15 s (a cold start through the gateway), a "morning" window B+3..B+5 and an "afternoon"
window B+6..B+8 (cron, UTC) with a request every 20 s inside them, a one-minute lunch dip
between them (shorter than consolidateAfter plus Karpenter's latency, so the node stays and
the afternoon's pod lands on it again), and the evening until B+11 in which the node goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai
import yaml

from localworld.cluster import start_cluster
from localworld.gateway_env import gateway_kubeconfig, model_manifest
from localworld.karpenter import (
    Recorder,
    apply_nodepools,
    delete_nodepools,
    gpu_spec,
    nodepool,
    start_node_agent,
)
from localworld.operator_env import OperatorAccess, OperatorRunner, install, operator_kubeconfig
from localworld.procs import BIN, start_gateway
from localworld.tiny_gguf import write_tiny_llama

MODEL = "office"
NIGHT_REQUEST = 15.0  # seconds after the day starts (30 s before B)
WINDOWS = [("morning", 3, 2), ("afternoon", 6, 2)]  # name, minutes after B, minutes
REQUEST_EVERY = 20.0
DAY_SECONDS = 11.5 * 60
PRICES = {"g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g5.xlarge": 1.006, "g5.2xlarge": 1.212}


@dataclass
class Sent:
    at: float  # wall clock, unix seconds
    seconds: float
    error: str = ""


def planned_requests() -> list[float]:
    """Seconds after the day start (B - 30 s) at which a request is sent."""
    times = [NIGHT_REQUEST]
    opens = 30.0
    for _, minute, minutes in WINDOWS:
        start = opens + minute * 60
        times += [start + 5 + k * REQUEST_EVERY for k in range(int(minutes * 60 // REQUEST_EVERY))]
    return times


def spec_document(namespace: str, base: datetime) -> dict[str, Any]:
    windows = []
    for name, minute, minutes in WINDOWS:
        opens = base + timedelta(minutes=minute)
        start = f"{opens.minute} {opens.hour} * * *"
        windows.append({"name": name, "start": start, "duration": f"{minutes}m"})
    manifest = model_manifest(
        MODEL,
        namespace,
        wake_timeout="3m",
        idle_timeout="20s",
        scale_down_delay="1s",
        extra_spec={
            "gpu": gpu_spec("Tesla-T4"),
            "schedule": {"timezone": "UTC", "windows": [dict(w, minReplicas=1) for w in windows]},
        },
    )
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="keep the trace, spec and world here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="siesta-karpenter-day-"))
    out.mkdir(parents=True, exist_ok=True)

    cluster = start_cluster()
    install(cluster)
    namespace = f"bench-day-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s"
    )
    cluster.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "siesta"}},
        namespace,
    )
    models = out / "models"
    models.mkdir(exist_ok=True)
    write_tiny_llama(models / "tiny.gguf")
    agent = start_node_agent(cluster, out / "nodes", models)
    apply_nodepools(cluster)
    access = OperatorAccess(operator_kubeconfig(cluster, out / "operator.kubeconfig"))
    runner = OperatorRunner(cluster, access, namespace, out / "logs")
    gateway = None
    try:
        # B: the first full minute at least 45 s away; the day starts 30 s before it.
        base_ts = (int(time.time() + 45) // 60 + 1) * 60
        base = datetime.fromtimestamp(base_ts, UTC)
        wall_start = base_ts - 30.0
        offset = 0.0
        runner.start(SIESTA_SERVER_DRAIN_TIMEOUT="5s")
        gateway = start_gateway(
            gateway_kubeconfig(cluster, out / "gateway.kubeconfig"),
            namespaces=[namespace],
            log_dir=out / "logs",
            args=["--keepalive", "1"],
        )
        cluster.apply(spec_document(namespace, base))
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
        sent: list[Sent] = []
        with Recorder(cluster, namespace) as seen:
            time.sleep(max(wall_start - time.time(), 0))
            for at in planned_requests():
                time.sleep(max(wall_start + at - time.time(), 0))
                sent.append(ask(client))
            time.sleep(max(wall_start + DAY_SECONDS - time.time(), 0))
        wall_end = wall_start + DAY_SECONDS
        spec = spec_document("default", base)
        report = compare(seen, agent, sent, wall_start, wall_end, offset, out, spec)
    finally:
        if gateway is not None:
            gateway.stop()
        for running in runner.running:
            running.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        delete_nodepools(cluster)
        agent.proc.stop(grace=30)
    print(json.dumps(report, indent=2))
    return 0


def ask(client: openai.OpenAI) -> Sent:
    began = time.time()
    try:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=8,
            extra_body={"ignore_eos": True},
            timeout=240,
        )
    except openai.OpenAIError as error:
        return Sent(began, time.time() - began, str(error))
    return Sent(began, time.time() - began)


def compare(
    seen: Recorder,
    agent: Any,
    sent: list[Sent],
    wall_start: float,
    wall_end: float,
    offset: float,
    out: Path,
    spec: dict[str, Any],
) -> dict[str, Any]:
    # Real: each Karpenter node's life inside the day, at its instance type's price.
    real_seconds = 0.0
    real_cost = 0.0
    nodes = []
    for name, labels in seen.nodes.items():
        born = seen.first(f"node:{name}:seen") or wall_start
        died = seen.first(f"node:{name}:gone") or wall_end
        life = max(min(died, wall_end) - max(born, wall_start), 0.0)
        instance = labels.get("node.kubernetes.io/instance-type", "")
        real_seconds += life
        real_cost += life / 3600 * PRICES.get(instance, 0.0)
        nodes.append({"node": name, "instanceType": instance, "seconds": round(life, 1)})

    # The world of the run: provisioning = pod created -> GPU allocatable on its node,
    # model load = GPU allocatable -> pod Ready (first pod on each new node).
    provision, load = [], []
    for name in seen.nodes:
        gpu_ready = agent.event_time(name, "gpu-ready")
        uid = seen.first_pod_on(name)
        ready = seen.first(f"pod:{uid}:ready")
        if gpu_ready and uid and ready:
            provision.append(round(gpu_ready - seen.pod_created[uid], 2))
            load.append(round(ready - gpu_ready, 2))
    consolidate = nodepool("gpu-t4")["spec"]["disruption"]["consolidateAfter"]
    world = {
        "autoscaler": "karpenter",
        "consolidateAfterSeconds": consolidate,
        "nodeProvisionSeconds": round(sum(provision) / len(provision), 2) if provision else 30,
        "modelLoadSeconds": round(sum(load) / len(load), 2) if load else 2,
        "metricIntervalSeconds": 30,
    }
    to_operator = timedelta(seconds=offset)

    def iso(wall: float) -> str:
        return (datetime.fromtimestamp(wall, UTC) + to_operator).isoformat()

    lines = [f"# span: {iso(wall_start)} {iso(wall_end)}", "timestamp,duration"]
    lines += [f"{iso(s.at)},{min(s.seconds, 1.0):.3f}" for s in sent if not s.error]
    (out / "trace.csv").write_text("\n".join(lines) + "\n")
    (out / "world.yaml").write_text(yaml.safe_dump(world))
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    simulated = subprocess.run(
        [str(BIN / "siesta"), "simulate", "-f", str(out / "spec.yaml"),
         "--trace", str(out / "trace.csv"), "--world", str(out / "world.yaml"),
         "--policy", "siesta", "-o", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    policy = json.loads(simulated.stdout)["policies"][0]
    sim_seconds = float(policy["nodeHours"]) * 3600
    return {
        "requests": len(sent),
        "failed": [s.error for s in sent if s.error],
        "real": {
            "nodeSeconds": round(real_seconds, 1),
            "cost": round(real_cost, 5),
            "nodes": nodes,
        },
        "simulated": {
            "nodeSeconds": round(sim_seconds, 1),
            "cost": round(float(policy["cost"]), 5),
            "nodesStarted": policy["nodesStarted"],
            "podStarts": policy["podStarts"],
        },
        "simulatorError": round((sim_seconds - real_seconds) / real_seconds, 4)
        if real_seconds
        else None,
        "world": world,
        "measured": {"provisionSeconds": provision, "modelLoadSeconds": load},
        "files": str(out),
    }


if __name__ == "__main__":
    sys.exit(main())
