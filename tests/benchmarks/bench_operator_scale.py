"""Benchmark: the operator with 100 to 1,000 ModelDeployments (startup, idle API rate, memory,
one schedule transition for all of them).

Runs against the real test control plane (started if needed, or the one named by
SIESTA_CLUSTER_NAME), with `siesta operator` as a subprocess authenticated as its own
ServiceAccount (as tests/benchmarks/bench_operator_wake.py). A script, not a test:

    PYTHONPATH=kit:tests .venv/bin/python tests/benchmarks/bench_operator_scale.py --sizes 100,500,1000

For each size N, in a fresh namespace:

1. N ModelDeployments are created first (`kubectl create -f` of one multi-document file):
   CPU-only (`gpu.count: 0`), `file:///models/x.gguf` (no cache volume), replicas 0..1, one
   schedule window (`minReplicas: 1`, duration 1h) that opens at a fixed instant of the
   operator's clock. The operator's clock is shifted (SIESTA_CLOCK_OFFSET_SECONDS) so that
   the window opens a known number of seconds after the operator starts.
2. The operator starts. Convergence: every ModelDeployment has status.observedGeneration ==
   metadata.generation and its StatefulSet exists (polled once a second by listing both).
   Also reported: when the operator's own API-call counter stopped growing.
3. Steady state: `siesta_operator_api_calls_total` over a quiet interval, split into reads
   (get, list) and writes (everything else).
4. Memory: VmRSS of the operator process after convergence (and after the transition).
5. The window opens for all N at once: time from that instant until a watch on the
   namespace's StatefulSets (started before) has seen `spec.replicas == 1` on all N.

Then the namespace is deleted (operator stopped, finalizers removed) and waited for.

Every ModelDeployment takes one ClusterIP (its Service NAME). kube-apiserver's default
--service-cluster-ip-range (10.0.0.0/24) holds only ~250 Services, so kit/cluster/up.sh
starts the API server with 10.96.0.0/16; a cluster started before that change stalls near
250 models with "failed to allocate a serviceIP: range is full" (make cluster-down first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from kubernetes import client, config, watch

from localworld.cluster import Cluster, start_cluster
from localworld.operator_env import (
    OperatorAccess,
    OperatorRunner,
    RunningOperator,
    install,
    operator_kubeconfig,
)
from siesta.api.contract import API_VERSION, GROUP, MODEL_LABEL, PLURAL, VERSION

READ_VERBS = {"get", "list", "watch"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} (after {timeout:.0f}s)")
        time.sleep(interval)


def manifest(count: int, opens: datetime) -> str:
    """N ModelDeployments at zero whose window opens at `opens` (operator clock, UTC)."""
    window = {
        "name": "bench",
        "start": f"{opens.minute} {opens.hour} * * *",
        "duration": "1h",
        "minReplicas": 1,
    }
    documents = [
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": f"m{index:04d}"},
            "spec": {
                "model": {"uri": "file:///models/x.gguf"},
                "gpu": {"count": 0},
                "replicas": {"min": 0, "max": 1},
                "schedule": {"timezone": "UTC", "windows": [window]},
            },
        }
        for index in range(count)
    ]
    return yaml.safe_dump_all(documents)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def api_calls(operator: RunningOperator) -> dict[str, float]:
    """`siesta_operator_api_calls_total` by verb."""
    by_verb: dict[str, float] = {}
    for key, value in operator.metrics().items():
        if key.startswith("siesta_operator_api_calls_total{"):
            verb = key.split('verb="', 1)[1].split('"', 1)[0]
            by_verb[verb] = by_verb.get(verb, 0.0) + value
    return by_verb


def split(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, dict]:
    delta = {v: after.get(v, 0.0) - before.get(v, 0.0) for v in set(before) | set(after)}
    delta = {v: d for v, d in delta.items() if d}
    reads = sum(d for v, d in delta.items() if v in READ_VERBS)
    writes = sum(d for v, d in delta.items() if v not in READ_VERBS)
    return reads, writes, delta


class ReplicaWatch:
    """Watches every StatefulSet of a namespace; when each first showed `replicas`."""

    def __init__(self, apps: client.AppsV1Api, namespace: str, replicas: int) -> None:
        self.replicas = replicas
        self.reached: dict[str, float] = {}
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(apps, namespace), daemon=True)
        self._thread.start()

    def _run(self, apps: client.AppsV1Api, namespace: str) -> None:
        resource_version = None
        while not self._stop:
            stream = watch.Watch()
            try:
                kwargs: dict[str, Any] = {"timeout_seconds": 60}
                if resource_version:
                    kwargs["resource_version"] = resource_version
                for event in stream.stream(
                    apps.list_namespaced_stateful_set,
                    namespace,
                    label_selector=MODEL_LABEL,
                    **kwargs,
                ):
                    obj = event["object"]
                    resource_version = obj.metadata.resource_version
                    if int(obj.spec.replicas or 0) == self.replicas:
                        with self.lock:
                            self.reached.setdefault(obj.metadata.name, time.time())
                    if self._stop:
                        stream.stop()
            except client.ApiException as error:
                if error.status == 410:
                    resource_version = None
                else:
                    time.sleep(0.5)

    def count(self) -> int:
        with self.lock:
            return len(self.reached)

    def stop(self) -> None:
        self._stop = True


class Bench:
    def __init__(self, cluster: Cluster, access: OperatorAccess, workdir: Path) -> None:
        self.cluster = cluster
        self.access = access
        self.workdir = workdir
        config.load_kube_config(str(cluster.kubeconfig))
        self.custom = client.CustomObjectsApi()
        self.apps = client.AppsV1Api()
        self.core = client.CoreV1Api()

    def converged(self, namespace: str, count: int) -> tuple[int, int]:
        """(ModelDeployments whose status observed their generation, StatefulSets)."""
        mds = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        observed = sum(
            1
            for md in mds["items"]
            if (md.get("status") or {}).get("observedGeneration")
            == md["metadata"].get("generation")
        )
        sts = self.apps.list_namespaced_stateful_set(namespace, label_selector=MODEL_LABEL)
        return observed, len(sts.items)

    def cleanup(self, namespace: str, runner: OperatorRunner, timeout: float) -> float:
        for running in runner.running:
            running.stop()
        started = time.monotonic()
        self.core.delete_namespace(namespace, propagation_policy="Background")
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        unblock = {"metadata": {"finalizers": None}}

        def strip(name: str) -> None:
            with contextlib.suppress(client.ApiException):
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, unblock
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(strip, [i["metadata"]["name"] for i in items["items"]]))

        def gone() -> bool:
            try:
                self.core.read_namespace(namespace)
            except client.ApiException as error:
                return error.status == 404
            return False

        try:
            wait(f"namespace {namespace} deleted", gone, timeout, interval=2.0)
        except TimeoutError as error:
            log(f"warning: {error}; going on")
        return time.monotonic() - started

    def run_size(self, count: int, args: argparse.Namespace, hint: float) -> dict[str, Any]:
        result: dict[str, Any] = {"models": count}
        namespace = f"bench-scale-{count}-{uuid.uuid4().hex[:5]}"
        cluster = self.cluster
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl(
            "wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s"
        )
        cluster.apply(
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "siesta"}},
            namespace,
        )
        # The window opens `lead` seconds after the operator starts (operator clock).
        lead = hint + args.settle_seconds + args.steady_seconds + 20.0
        opens_operator = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
        path = self.workdir / f"mds-{count}.yaml"
        path.write_text(manifest(count, opens_operator))
        started = time.monotonic()
        cluster.kubectl("create", "-n", namespace, "-f", str(path), timeout=900)
        result["create_s"] = round(time.monotonic() - started, 1)
        log(f"{count}: created {count} ModelDeployments in {result['create_s']} s")

        runner = OperatorRunner(cluster, self.access, namespace, self.workdir / f"logs-{count}")
        watcher: ReplicaWatch | None = None
        try:
            start_real = time.time()
            opens_real = start_real + lead
            offset = opens_operator.timestamp() - opens_real
            operator = runner.start(SIESTA_CLOCK_OFFSET_SECONDS=f"{offset:.3f}")
            pid = operator.proc.process.pid
            result["metrics_up_s"] = round(time.time() - start_real, 1)

            # (1) convergence
            progress = {"last": (0, 0)}

            def all_converged() -> bool:
                progress["last"] = self.converged(namespace, count)
                return progress["last"] == (count, count)

            try:
                wait("convergence", all_converged, timeout=args.converge_timeout, interval=1.0)
                result["converge_s"] = round(time.time() - start_real, 1)
            except TimeoutError:
                result["converge_s"] = None
                result["converge_progress"] = progress["last"]
            log(f"{count}: converged after {result['converge_s']} s ({progress['last']})")

            # Writes finished: the counter stops growing for settle_seconds.
            last_total, last_change = sum(api_calls(operator).values()), time.time()
            quiet_deadline = time.monotonic() + args.settle_seconds + 120
            while time.time() - last_change < args.settle_seconds:
                if time.monotonic() > quiet_deadline:
                    break
                time.sleep(1.0)
                total = sum(api_calls(operator).values())
                if total != last_total:
                    last_total, last_change = total, time.time()
            result["quiet_after_s"] = round(last_change - start_real, 1)
            result["startup_api_calls"] = api_calls(operator)
            result["rss_mib_converged"] = round(rss_kib(pid) / 1024, 1)

            # (2) steady state
            steady = min(args.steady_seconds, opens_real - time.time() - 10.0)
            if steady >= 10:
                before = api_calls(operator)
                time.sleep(steady)
                reads, writes, delta = split(before, api_calls(operator))
                result["steady"] = {
                    "seconds": round(steady, 1),
                    "reads_per_min": round(reads * 60 / steady, 2),
                    "writes_per_min": round(writes * 60 / steady, 2),
                    "by_verb": delta,
                }
            else:
                result["steady"] = None
                log(f"{count}: no time left for a steady-state interval before the window")
            log(f"{count}: steady state {result['steady']}")

            # (4) the window opens for all of them at once
            watcher = ReplicaWatch(self.apps, namespace, 1)
            if opens_real <= time.time():
                result["window_opened_early"] = True
                log(f"{count}: the window opened before the operator had settled")
            before = api_calls(operator)
            time.sleep(max(opens_real - time.time(), 0))
            try:
                wait(
                    "all StatefulSets at 1",
                    lambda: watcher.count() >= count,
                    timeout=args.transition_timeout,
                    interval=0.05,
                )
            except TimeoutError:
                log(f"{count}: only {watcher.count()} of {count} reached 1 replica")
            with watcher.lock:
                delays = sorted(t - opens_real for t in watcher.reached.values())
            _, writes, delta = split(before, api_calls(operator))
            result["transition"] = {
                "reached": len(delays),
                "first_s": round(delays[0], 2) if delays else None,
                "median_s": round(statistics.median(delays), 2) if delays else None,
                "all_s": round(delays[-1], 2) if len(delays) == count else None,
                "last_s": round(delays[-1], 2) if delays else None,
                "api_calls": delta,
            }
            result["rss_mib_after_transition"] = round(rss_kib(pid) / 1024, 1)
            log(f"{count}: transition {result['transition']}")
        finally:
            if watcher is not None:
                watcher.stop()
            (self.workdir / f"logs-{count}.txt").write_text(runner.logs())
            result["cleanup_s"] = round(self.cleanup(namespace, runner, args.cleanup_timeout), 1)
            log(f"{count}: namespace deleted in {result['cleanup_s']} s")
        return result


def table(results: list[dict[str, Any]]) -> str:
    def cell(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    rows = [
        ("create N MDs (kubectl create -f)", lambda r: cell(r["create_s"], " s")),
        ("operator start -> /metrics answers", lambda r: cell(r.get("metrics_up_s"), " s")),
        (
            "start -> all converged (status + StatefulSet)",
            lambda r: cell(r.get("converge_s"), " s"),
        ),
        ("start -> last API call of startup", lambda r: cell(r.get("quiet_after_s"), " s")),
        (
            "startup API calls",
            lambda r: cell(
                " ".join(f"{k}={int(v)}" for k, v in sorted(r.get("startup_api_calls", {}).items()))
            ),
        ),
        ("steady reads / min", lambda r: cell((r.get("steady") or {}).get("reads_per_min"))),
        ("steady writes / min", lambda r: cell((r.get("steady") or {}).get("writes_per_min"))),
        ("RSS after convergence", lambda r: cell(r.get("rss_mib_converged"), " MiB")),
        ("RSS after the transition", lambda r: cell(r.get("rss_mib_after_transition"), " MiB")),
        (
            "window opens -> first StatefulSet at 1",
            lambda r: cell(r["transition"]["first_s"], " s"),
        ),
        ("window opens -> half at 1", lambda r: cell(r["transition"]["median_s"], " s")),
        ("window opens -> all N at 1", lambda r: cell(r["transition"]["all_s"], " s")),
        ("namespace deletion", lambda r: cell(r.get("cleanup_s"), " s")),
    ]
    header = "| what | " + " | ".join(f"N = {r['models']}" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    for label, fn in rows:
        values = []
        for r in results:
            try:
                values.append(fn(r))
            except (KeyError, TypeError):
                values.append("-")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=5.0)
    parser.add_argument("--converge-timeout", type=float, default=420.0)
    parser.add_argument("--transition-timeout", type=float, default=240.0)
    parser.add_argument("--cleanup-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    cluster = start_cluster()
    install(cluster)
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-scale-"))
    log(f"cluster {cluster.apiserver}; work directory {workdir}")
    access = OperatorAccess(operator_kubeconfig(cluster, workdir / "kubeconfig.yaml"))
    bench = Bench(cluster, access, workdir)
    results: list[dict[str, Any]] = []
    # Seconds per model to converge, from the previous size (first guess: 0.3 s).
    per_model = 0.3
    for count in sizes:
        hint = max(30.0, 1.5 * per_model * count)
        result = bench.run_size(count, args, hint)
        results.append(result)
        if result.get("quiet_after_s"):
            per_model = result["quiet_after_s"] / count
        print(table(results), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
