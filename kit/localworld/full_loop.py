"""The full loop: control plane, operator, gateway and model servers run by the process kubelet.

Everything is real and runs as it would in a cluster, except that pods on the e2e node are
local processes (kit/localworld/process_kubelet.py) instead of containers. The operator and
the gateway authenticate with their own ServiceAccounts' tokens.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import gateway_kubeconfig, get_json, model_manifest
from localworld.nodes import node_ready
from localworld.operator_env import OperatorRunner, RunningOperator, get
from localworld.process_kubelet import command as kubelet_command
from localworld.procs import Proc, start, start_gateway
from siesta.api.contract import MODEL_LABEL

KIT = Path(__file__).resolve().parents[1]
E2E_NODE = "proc-gpu-e2e"
E2E_LABEL = {"siesta.test/kubelet": "e2e"}
NOWHERE = {"siesta.test/kubelet": "no-such-node"}  # pods stay Pending: a GPU that never comes


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from localworld.tiny_gguf import write_tiny_llama

    directory = tmp_path_factory.mktemp("models")
    write_tiny_llama(directory / "tiny.gguf")
    return directory


def start_process_kubelet(
    cluster: Cluster,
    node: str,
    node_index: int,
    labels: dict[str, str],
    model_dir: Path,
    log_dir: Path,
) -> Proc:
    argv = kubelet_command(cluster.kubeconfig, node, node_index, model_dir, log_dir, labels)
    env = {"PYTHONPATH": os.pathsep.join([str(KIT), os.environ.get("PYTHONPATH", "")])}
    proc = start(f"kubelet-{node}", argv, env=env, log_dir=log_dir)

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"process kubelet exited:\n{proc.log_tail()}")
        try:
            return node_ready(cluster.kubeconfig, node)
        except RuntimeError:
            return False

    try:
        wait_for(f"node {node} Ready", ready, 60)
    except BaseException:
        proc.stop(grace=10)
        raise
    return proc


@pytest.fixture(scope="session")
def process_kubelet(
    cluster: Cluster, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    proc = start_process_kubelet(
        cluster, E2E_NODE, 2, E2E_LABEL, model_dir, tmp_path_factory.mktemp("kubelet")
    )
    yield proc
    proc.stop(grace=30)


@pytest.fixture(scope="session")
def gateway_access(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gateway_kubeconfig(cluster, tmp_path_factory.mktemp("gateway") / "kubeconfig.json")


@dataclass
class Loop:
    """One test's Siesta: its namespace, operator(s), gateway(s) and helpers."""

    cluster: Cluster
    namespace: str
    operators: OperatorRunner
    gateway_kubeconfig: Path
    log_dir: Path
    gateways: list[Proc] = field(default_factory=list)
    operator_env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> Proc:
        return self.gateways[-1]

    def start_operator(self) -> RunningOperator:
        return self.operators.start(**self.operator_env)

    def start_gateway(self, *args: str) -> Proc:
        proc = start_gateway(
            self.gateway_kubeconfig,
            namespaces=[self.namespace],
            log_dir=self.log_dir,
            args=["--keepalive", "1", *args],
            name=f"gateway{len(self.gateways)}",
        )
        self.gateways.append(proc)
        return proc

    def add_model(self, name: str, **kwargs: Any) -> str:
        kwargs.setdefault("node_selector", E2E_LABEL)
        manifest = model_manifest(name, self.namespace, **kwargs)
        self.cluster.apply(manifest)
        wait_for(f"StatefulSet {name} at 0 replicas", lambda: self.replicas(name) == 0, 30)
        alias = str(manifest["spec"]["model"].get("alias") or name)
        wait_for(
            f"gateway lists {alias}",
            lambda: any(
                m["id"] == alias for m in get_json(f"{self.gateway.url}/v1/models")["data"]
            ),
            10,
        )
        return alias

    def replicas(self, name: str) -> int | None:
        found = get(self.cluster, "statefulset", name, self.namespace)
        return None if found is None else int(found["spec"].get("replicas") or 0)

    def pods(self, name: str) -> list[dict[str, Any]]:
        pods = self.cluster.get_json("pods", "-n", self.namespace, "-l", f"{MODEL_LABEL}={name}")
        return list(pods.get("items", []))

    def client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 120)
        return openai.OpenAI(base_url=f"{self.gateway.url}/v1", api_key="unused", **kwargs)

    def chat(self, alias: str, **kwargs: Any) -> str:
        completion = self.client(**kwargs).chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=8,
            extra_body={"ignore_eos": True},  # random weights: never an empty answer
        )
        assert completion.choices[0].message.content is not None
        return completion.choices[0].message.content

    def logs(self) -> str:
        parts = [self.operators.logs()]
        parts += [f"--- {g.name}\n{g.log_tail(40)}" for g in self.gateways]
        return "\n".join(parts)


@contextlib.contextmanager
def running_loop(
    cluster: Cluster,
    namespace: str,
    operator_runner: OperatorRunner,
    gateway_access: Path,
    logs: Path,
) -> Iterator[Loop]:
    """A Loop whose gateways stop and whose models scale to zero when the test ends."""
    running = Loop(
        cluster,
        namespace,
        operator_runner,
        gateway_access,
        logs,
        operator_env={"SIESTA_SERVER_DRAIN_TIMEOUT": "5s"},
    )
    yield running
    for gateway in running.gateways:
        gateway.stop()
    # Scale to zero before the namespace goes, so the node's processes end cleanly.
    for sts in cluster.get_json("statefulsets", "-n", namespace).get("items", []):
        cluster.kubectl(
            "scale",
            "statefulset",
            sts["metadata"]["name"],
            "-n",
            namespace,
            "--replicas=0",
            check=False,
        )


@pytest.fixture
def loop(
    cluster: Cluster,
    namespace: str,
    operator_runner: OperatorRunner,
    gateway_access: Path,
    process_kubelet: Proc,
    tmp_path: Path,
) -> Iterator[Loop]:
    with running_loop(
        cluster, namespace, operator_runner, gateway_access, tmp_path / "logs"
    ) as running:
        yield running


def run_concurrently(count: int, fn: Any, *args: Any) -> list[Any]:
    """Call fn(*args) `count` times at once; results (or exceptions) in order."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(fn, *args) for _ in range(count)]
        results: list[Any] = []
        for future in futures:
            try:
                results.append(future.result(timeout=300))
            except Exception as error:  # reported by the caller
                results.append(error)
        return results
