"""Benchmark: demand signal (gateway Lease write) -> StatefulSet replicas change, and the
Kubernetes API calls an idle ModelDeployment costs.

Runs against the real test control plane (started if needed, or the one named by
SIESTA_CLUSTER_NAME), with `siesta operator` as a subprocess authenticated as its own
ServiceAccount. A script, not a test:

    .venv/bin/python tests/benchmarks/bench_operator_wake.py            # about 2-3 minutes
    .venv/bin/python tests/benchmarks/bench_operator_wake.py --tries 5 --idle-seconds 20

Wake latency: t0 just before the Lease write is sent; t1 when a watch on the StatefulSet
(started before t0) delivers the new replica count. Idle cost: the operator's own counter
`siesta_operator_api_calls_total` over a quiet interval with N idle models at zero.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config, watch

from localworld.cluster import start_cluster
from localworld.operator_env import (
    OperatorAccess,
    OperatorRunner,
    demand_lease,
    install,
    model_deployment,
    operator_kubeconfig,
)


def wait(what: str, probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


class ReplicaWatch:
    """Watches one StatefulSet; remembers when each replica count was first seen."""

    def __init__(self, apps: client.AppsV1Api, namespace: str, name: str) -> None:
        self.seen: list[tuple[float, int]] = []
        self.condition = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(apps, namespace, name), daemon=True)
        self._thread.start()

    def _run(self, apps: client.AppsV1Api, namespace: str, name: str) -> None:
        while not self._stop:
            stream = watch.Watch()
            for event in stream.stream(
                apps.list_namespaced_stateful_set,
                namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=30,
            ):
                replicas = int(event["object"].spec.replicas or 0)
                with self.condition:
                    if not self.seen or self.seen[-1][1] != replicas:
                        self.seen.append((time.perf_counter(), replicas))
                    self.condition.notify_all()
                if self._stop:
                    stream.stop()

    def wait_for(self, replicas: int, after: float, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                for seen_at, count in self.seen:
                    if count == replicas and seen_at >= after:
                        return seen_at
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replicas never became {replicas}")
                self.condition.wait(timeout=0.5)

    def current(self) -> int | None:
        with self.condition:
            return self.seen[-1][1] if self.seen else None

    def stop(self) -> None:
        self._stop = True


def write_lease(
    coordination: client.CoordinationV1Api, namespace: str, body: dict[str, Any]
) -> None:
    name = body["metadata"]["name"]
    try:
        current = coordination.read_namespaced_lease(name, namespace)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        coordination.replace_namespaced_lease(name, namespace, body)
    except client.ApiException as error:
        if error.status != 404:
            raise
        coordination.create_namespaced_lease(namespace, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--idle-models", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    cluster = start_cluster()
    install(cluster)
    namespace = f"bench-operator-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s"
    )
    cluster.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "siesta"}},
        namespace,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    access = OperatorAccess(operator_kubeconfig(cluster, workdir / "kubeconfig.yaml"))
    runner = OperatorRunner(cluster, access, namespace, workdir / "logs")
    config.load_kube_config(str(cluster.kubeconfig))
    apps, coordination = client.AppsV1Api(), client.CoordinationV1Api()
    results: dict[str, Any] = {}
    try:
        operator = runner.start()
        spec = {
            "gpu": {"count": 0},
            "replicas": {"min": 0, "max": 1},
            "scaling": {"idleTimeout": "1s", "scaleDownDelay": "1s"},
        }
        cluster.apply(model_deployment("wake", **spec), namespace)
        watcher = ReplicaWatch(apps, namespace, "wake")
        wait("StatefulSet at 0", lambda: watcher.current() == 0)

        latencies: list[float] = []
        for attempt in range(args.tries):
            wait("StatefulSet at 0", lambda: watcher.current() == 0, timeout=60)
            time.sleep(0.3)
            started = time.perf_counter()
            write_lease(coordination, namespace, demand_lease("wake", pending=1, duration=30))
            changed = watcher.wait_for(1, after=started)
            latencies.append(changed - started)
            print(f"try {attempt + 1:2d}: {1000 * (changed - started):7.1f} ms", flush=True)
            # The request is served: nothing pending; after idleTimeout the model sleeps.
            write_lease(coordination, namespace, demand_lease("wake", pending=0, duration=30))
            watcher.wait_for(0, after=changed, timeout=60)
        watcher.stop()
        results["wake_ms"] = {
            "tries": len(latencies),
            "median": round(1000 * statistics.median(latencies), 1),
            "worst": round(1000 * max(latencies), 1),
            "best": round(1000 * min(latencies), 1),
        }

        idle = {"gpu": {"count": 0}, "replicas": {"min": 0, "max": 1}}
        for index in range(args.idle_models):
            cluster.apply(model_deployment(f"idle-{index}", **idle), namespace)
        wait(
            "every idle model has a status",
            lambda: all(
                cluster.get_json("modeldeployment", f"idle-{i}", "-n", namespace)
                .get("status", {})
                .get("phase")
                == "ScaledToZero"
                for i in range(args.idle_models)
            ),
        )
        time.sleep(5)
        before = operator.metric_sum("siesta_operator_api_calls_total")
        time.sleep(args.idle_seconds)
        after = operator.metric_sum("siesta_operator_api_calls_total")
        models = args.idle_models + 1  # the wake model is idle at zero too
        per_minute = (after - before) / models * 60.0 / args.idle_seconds
        results["idle"] = {
            "models": models,
            "seconds": args.idle_seconds,
            "api_calls": after - before,
            "api_calls_per_minute_per_model": round(per_minute, 3),
        }
    finally:
        for running in runner.running:
            running.stop()
        for item in cluster.get_json("modeldeployments", "-n", namespace).get("items", []):
            name = item["metadata"]["name"]
            unblock = '{"metadata":{"finalizers":null}}'
            cluster.kubectl(
                "patch", "md", name, "-n", namespace, "--type=merge", "-p", unblock, check=False
            )
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
