"""What the gateway and the loop add: cold-start overhead, warm latency and throughput.

    PYTHONPATH=kit:tests .venv/bin/python tests/benchmarks/bench_gateway.py [--cold 5] [--warm 300]

Runs the real loop on the local control plane (SIESTA_CLUSTER_NAME, default "siesta"):
operator and gateway as processes with their ServiceAccounts, a process-kubelet GPU node,
a tiny model. The StatefulSet, pods and EndpointSlices are watched from here; every time is
this machine's monotonic clock when the watch event or the byte arrived.

Cold start, per run (model at zero, one streaming request with max_tokens=1):
  request -> scale write      first request sent to the gateway -> StatefulSet replicas 1
  (pod Ready: when the process kubelet's status write returned, from its log)
  ready -> endpoint           pod Ready -> EndpointSlice lists it ready (controller-manager)
  ready -> forwarded          pod Ready -> the gateway forwards the held request (the
                              kubelet's and the gateway's logs, wall clock, 1 ms resolution)
  ready -> first byte         pod Ready -> response status line at the client (EndpointSlice
                              controller + gateway + the replica's response headers)
  ready -> first token        the same, to the first streamed token (adds the server's
                              first inference after loading)
  server first answer         baseline: a fresh server called directly the moment /health
                              turns 200 (its own share of "ready -> first byte")
Warm, interleaved: the same request straight to the server and through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from localworld.cluster import start_cluster, wait_for
from localworld.full_loop import start_process_kubelet
from localworld.gateway_env import gateway_kubeconfig, model_manifest
from localworld.operator_env import install, operator_kubeconfig
from localworld.procs import BIN, free_port, http_status, start, start_gateway, start_server
from siesta.api.contract import MODEL_LABEL
from siesta.gateway.kube import ApiError, KubeClient, load_config

NAMESPACE = "bench-gateway"
MODEL = "bench"
NODE = "bench-gpu-0"
LABEL = {"siesta.test/kubelet": "bench"}
BODY = {"model": MODEL, "prompt": "the", "max_tokens": 1, "ignore_eos": True}


@dataclass
class Recorder:
    """Watch events (raw JSON, no model classes) with their arrival time."""

    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def watch(self, client: KubeClient, kind: str, path: str, params: dict[str, str]) -> None:
        while True:
            listed = await client.request("GET", path, params=params)
            version = listed["metadata"]["resourceVersion"]
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                async for event in client.watch(path, {**params, "resourceVersion": version}):
                    with self.lock:
                        self.events.append((time.monotonic(), kind, event.get("object") or {}))

    def first(self, kind: str, after: float, predicate: Any) -> float | None:
        with self.lock:
            for at, event_kind, obj in self.events:
                if event_kind == kind and at >= after and predicate(obj):
                    return at
        return None


LOG_TIME = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def log_times(log: Path, message: str) -> list[float]:
    """Wall-clock times (ms resolution) of the log lines that contain `message`."""
    pattern = re.compile(LOG_TIME + r" .*" + re.escape(message))
    return [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for m in pattern.finditer(log.read_text())
    ]


def first_after(times: list[float], after: float) -> float | None:
    later = [t for t in times if t >= after]
    return later[0] if later else None


def slice_ready(obj: dict[str, Any]) -> bool:
    return any((e.get("conditions") or {}).get("ready") for e in obj.get("endpoints") or [])


def start_watches(kubeconfig: Path, recorder: Recorder) -> None:
    """The StatefulSet and EndpointSlice watches, on an event loop of their own."""
    paths = {
        "sts": (f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets", {}),
        "slice": (
            f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
            {"labelSelector": f"kubernetes.io/service-name={MODEL}"},
        ),
    }

    async def run() -> None:
        client = KubeClient(load_config(str(kubeconfig)))
        await asyncio.gather(*(recorder.watch(client, k, p, q) for k, (p, q) in paths.items()))

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()


def sts_replicas(obj: dict[str, Any]) -> int:
    return int(obj.get("spec", {}).get("replicas") or 0)


def cold_start(
    gateway: str, recorder: Recorder, cluster: Any, kubelet_log: Path, gateway_log: Path
) -> dict[str, float]:
    wait_for("model at zero", lambda: _replicas(cluster) == 0 and not _pods(cluster), 180)
    sent = time.monotonic()
    sent_wall = time.time()
    with httpx.stream(
        "POST", f"{gateway}/v1/completions", json={**BODY, "stream": True}, timeout=300
    ) as response:
        first_byte = time.monotonic()  # status line and headers: the first bytes forwarded
        first_token = None
        for _ in response.iter_raw():
            first_token = first_token or time.monotonic()
    assert response.status_code == 200, response.status_code
    assert first_token is not None
    # Pod Ready (the process kubelet's status write) and the gateway forwarding the held
    # request, from the two processes' logs: same machine, same clock, 1 ms resolution.
    ready_wall = first_after(log_times(kubelet_log, f"/{MODEL}-0: ready=True"), sent_wall)
    forwarded_wall = first_after(log_times(gateway_log, "s: forwarded"), sent_wall)
    assert ready_wall is not None, "no Ready write in the kubelet's log"
    assert forwarded_wall is not None, "no forwarded request in the gateway's log"
    ready = sent + (ready_wall - sent_wall)
    scaled = recorder.first(
        "sts", sent, lambda o: o["metadata"]["name"] == MODEL and sts_replicas(o) >= 1
    )
    endpoint = recorder.first("slice", sent, slice_ready)
    assert scaled is not None, "no scale seen"
    assert ready is not None, "no Ready pod seen"
    assert endpoint is not None, "no ready endpoint seen"
    return {
        "request_to_scale_ms": (scaled - sent) * 1000,
        "ready_to_endpoint_ms": (endpoint - ready) * 1000,
        "ready_to_forwarded_ms": (forwarded_wall - ready_wall) * 1000,
        "ready_to_first_byte_ms": (first_byte - ready) * 1000,
        "endpoint_to_first_byte_ms": (first_byte - endpoint) * 1000,
        "ready_to_first_token_ms": (first_token - ready) * 1000,
        "request_to_first_token_s": first_token - sent,
    }


def server_first_answer(model: Path, log_dir: Path) -> float:
    """A fresh siesta-server, called directly as soon as /health says 200: its own share."""
    server = start_server(model, alias=MODEL, log_dir=log_dir, wait=False)
    try:
        while http_status(f"{server.url}/health", timeout=1.0) != 200:
            time.sleep(0.002)
        ready = time.monotonic()
        with httpx.stream(
            "POST", f"{server.url}/v1/completions", json={**BODY, "stream": True}, timeout=60
        ) as response:
            first_byte = time.monotonic()
            assert response.status_code == 200
            response.read()
        return (first_byte - ready) * 1000
    finally:
        server.stop()


def _replicas(cluster: Any) -> int | None:
    result = cluster.kubectl("get", "sts", MODEL, "-n", NAMESPACE, "-o", "json", check=False)
    return sts_replicas(json.loads(result.stdout)) if result.returncode == 0 else None


def _pods(cluster: Any) -> list[Any]:
    pods = cluster.get_json("pods", "-n", NAMESPACE, "-l", f"{MODEL_LABEL}={MODEL}")
    return list(pods["items"])


def latency(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.post(url, json=BODY)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed * 1000


def warm(direct: str, gateway: str, count: int) -> dict[str, Any]:
    paths = {"direct": f"{direct}/v1/completions", "gateway": f"{gateway}/v1/completions"}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    with httpx.Client(timeout=60) as client:
        for url in paths.values():  # warm both connections
            for _ in range(10):
                latency(client, url)
        for _ in range(count):
            for name, url in paths.items():
                samples[name].append(latency(client, url))
    # Pairs were sent back to back: their differences cancel most of the machine's drift.
    added = sorted(g - d for g, d in zip(samples["gateway"], samples["direct"], strict=True))
    result: dict[str, Any] = {}
    for name, values in samples.items():
        values.sort()
        result[name] = {
            "p50_ms": statistics.median(values),
            "p90_ms": values[int(len(values) * 0.9)],
        }
    result["added_p50_ms"] = statistics.median(added)
    result["added_p90_ms"] = added[int(len(added) * 0.9)]
    # Throughput in alternating 2 s windows, so both paths share the machine's ups and downs.
    windows: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(4):
        for name, url in paths.items():
            windows[name].append(throughput(url, seconds=2.0))
    for name, rates in windows.items():
        result[name]["throughput_rps"] = statistics.median(rates)
    return result


def throughput(url: str, concurrency: int = 8, seconds: float = 8.0) -> float:
    deadline = time.monotonic() + seconds
    counts = [0] * concurrency

    def worker(index: int) -> None:
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                assert client.post(url, json=BODY).status_code == 200
                counts[index] += 1

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return sum(counts) / seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=5, help="cold starts to measure")
    parser.add_argument("--warm", type=int, default=300, help="warm requests per path")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    cluster = start_cluster()
    install(cluster)
    from localworld.tiny_gguf import write_tiny_llama

    write_tiny_llama(work / "tiny.gguf")
    procs = [start_process_kubelet(cluster, NODE, 4, LABEL, work, work / "kubelet")]
    operator_env = {
        "KUBECONFIG": str(operator_kubeconfig(cluster, work / "operator.kubeconfig")),
        "SIESTA_METRICS_PORT": str(free_port()),
        "SIESTA_SERVER_DRAIN_TIMEOUT": "2s",
    }
    procs.append(
        start("operator", [str(BIN / "siesta"), "operator"], env=operator_env, log_dir=work)
    )
    gateway = start_gateway(
        gateway_kubeconfig(cluster, work / "gateway.kubeconfig"),
        log_dir=work,
        namespaces=[NAMESPACE],
    )
    procs.append(gateway)
    try:
        # A namespace left by an earlier run may still be terminating.
        cluster.kubectl(
            "wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=180s", check=False
        )
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE, "--timeout=60s"
        )
        cluster.apply(
            model_manifest(
                MODEL, NAMESPACE, idle_timeout="3s", scale_down_delay="1s", node_selector=LABEL
            )
        )
        recorder = Recorder()
        start_watches(cluster.kubeconfig, recorder)
        wait_for("StatefulSet created", lambda: _replicas(cluster) == 0, 60)
        time.sleep(1)
        runs = []
        for index in range(args.cold):
            runs.append(
                cold_start(gateway.url, recorder, cluster, procs[0].log_path, gateway.log_path)
            )
            print(
                f"cold start {index + 1}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in runs[-1].items()),
                file=sys.stderr,
            )
        cold = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        baseline = [server_first_answer(work / "tiny.gguf", work) for _ in range(args.cold)]
        cold["server_first_answer_ms"] = statistics.median(baseline)
        cold["siesta_ready_to_first_byte_ms"] = (
            cold["ready_to_first_byte_ms"] - cold["server_first_answer_ms"]
        )
        # Warm: a long idleTimeout keeps the model up; the pod's address is the direct path.
        cluster.kubectl(
            "patch",
            "md",
            MODEL,
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            '{"spec":{"scaling":{"idleTimeout":"30m"}}}',
        )
        httpx.post(f"{gateway.url}/v1/completions", json=BODY, timeout=300)
        pod = _pods(cluster)[0]
        direct = f"http://{pod['status']['podIP']}:8080"
        results = {
            "cold_start_median": cold,
            "cold_start_runs": runs,
            "warm": warm(direct, gateway.url, args.warm),
        }
    finally:
        for proc in reversed(procs):
            proc.stop(grace=20)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
