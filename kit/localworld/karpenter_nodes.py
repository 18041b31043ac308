"""What boots on a node Karpenter launches in the test cluster: a kubelet and the GPU Operator.

Karpenter's kwok provider only creates the Node object (kit/cluster/karpenter.sh). In a
real cluster the instance then boots, its kubelet registers (capacity without GPUs, since
the device plugin is not running yet), and the NVIDIA GPU Operator's GPU Feature Discovery
labels the node and its device plugin makes ``nvidia.com/gpu`` allocatable, minutes later.
This agent plays that part for every node labelled ``karpenter.sh/nodepool``:

1. "kubelet registers": the node's capacity and allocatable without ``nvidia.com/gpu``, and
   a process kubelet (kit/localworld/process_kubelet.py) started for it: it keeps the node
   Ready and runs its pods as real ``siesta-server`` processes;
2. after ``--gpu-delay`` seconds, the GPU Feature Discovery stand-in: the labels the GPU
   Operator sets (:func:`gfd_labels`, by instance family) and ``nvidia.com/gpu`` in the
   node's capacity and allocatable; then the NodePools' startup taint
   (:data:`GPU_PENDING_TAINT`, see kit/localworld/karpenter.py) comes off, so no pod lands
   before the GPUs are there (a real kubelet registers without them);
3. when the node object is gone (Karpenter consolidated it), the process kubelet stops.

It also provisions the volumes of its nodes, as the EBS CSI driver does on EKS: a claim of
the StorageClass ``siesta-local`` that the scheduler put on one of them gets a directory
under ``--volume-root``, as a PersistentVolume pinned to the node's zone
(kit/localworld/local_provisioner.py has the functions; the real node runs its own). So a
model whose file is downloaded (http, s3, hf: a cache claim) or read from a claim runs on
Karpenter's nodes as on the real one.

    PYTHONPATH=kit:tests python -m localworld.karpenter_nodes --kubeconfig K \
        --path-map /models=/tmp/models --log-dir /tmp/karpenter-nodes --gpu-delay 3

Each step is appended to ``--events`` (JSON lines: node, event, unix time), so that tests
and the demo can split a cold start into node launch, GPU labelling and pod start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import localworld.local_provisioner as volumes
from localworld.nodes import GPU_RESOURCE, POOLS
from siesta.gateway.kube import ApiError, KubeClient, load_config

log = logging.getLogger("karpenter-nodes")
Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
VOLUME_POLL_SECONDS = 0.5
# Karpenter labels a node it has registered (and has put the startup taints on).
REGISTERED_LABEL = "karpenter.sh/registered"
GPU_PENDING_TAINT = {"key": "siesta.test/gpu-pending", "value": "true", "effect": "NoSchedule"}
# Pods on these nodes get 10.244.INDEX.M; 100+ keeps clear of the fixed nodes' indexes.
FIRST_NODE_INDEX = 100
LAST_NODE_INDEX = 199


def instance_family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def gfd_labels(instance_type: str) -> dict[str, str]:
    """The labels GPU Feature Discovery (GPU Operator) puts on a node of this instance type."""
    pool = POOLS.get(instance_family(instance_type))
    if pool is None or not pool.is_gpu:
        return {}
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": str(pool.gpu_product),
        "nvidia.com/gpu.count": str(pool.gpu_count),
        "nvidia.com/gpu.memory": str(pool.gpu_memory_mib),
        "nvidia.com/gpu.family": pool.gpu_family,
        "nvidia.com/gpu.machine": instance_type,
        "nvidia.com/gpu.deploy.device-plugin": "true",
    }


def registered_resources(allocatable: dict[str, str]) -> dict[str, str | None]:
    """What a kubelet reports before the device plugin runs: everything but the GPUs.

    A merge patch: ``None`` removes the key that Karpenter's provider filled in."""
    resources: dict[str, str | None] = {k: v for k, v in allocatable.items() if k != GPU_RESOURCE}
    resources[GPU_RESOURCE] = None
    return resources


def gpu_count(instance_type: str) -> int:
    pool = POOLS.get(instance_family(instance_type))
    return pool.gpu_count if pool is not None else 0


@dataclass
class AgentConfig:
    kubeconfig: Path
    log_dir: Path
    gpu_delay: float
    path_map: list[str] = field(default_factory=list)
    events: Path | None = None
    volume_root: Path | None = None  # default: LOG_DIR/volumes


@dataclass
class BootedNode:
    name: str
    index: int
    task: asyncio.Task[None]
    kubelet: asyncio.subprocess.Process | None = None
    zone: str | None = None


class Agent:
    def __init__(self, config: AgentConfig, client: KubeClient) -> None:
        self.config = config
        self.client = client
        self.nodes: dict[str, BootedNode] = {}
        self._background: set[asyncio.Future[None]] = set()

    def record(self, node: str, event: str) -> None:
        log.info("%s: %s", node, event)
        if self.config.events is not None:
            with self.config.events.open("a") as out:
                out.write(json.dumps({"node": node, "event": event, "time": time.time()}) + "\n")

    def _free_index(self) -> int:
        used = {n.index for n in self.nodes.values()}
        for index in range(FIRST_NODE_INDEX, LAST_NODE_INDEX + 1):
            if index not in used:
                return index
        raise RuntimeError("no free node index")

    async def _patch_status(self, name: str, status: Obj) -> None:
        await self.client.request(
            "PATCH", f"/api/v1/nodes/{name}/status", {"status": status}, content_type=MERGE
        )

    async def boot(self, node: Obj, booted: BootedNode) -> None:
        name = node["metadata"]["name"]
        instance_type = node["metadata"].get("labels", {}).get(INSTANCE_TYPE_LABEL, "")
        # A node this agent booted before it restarted keeps its GPUs (and its pods).
        booted_before = "nvidia.com/gpu.memory" in node["metadata"].get("labels", {})
        self.record(name, "created")
        if not booted_before:
            allocatable = node.get("status", {}).get("allocatable") or {}
            resources = registered_resources(allocatable)
            await self._patch_status(name, {"capacity": resources, "allocatable": resources})
        argv = [
            sys.executable, "-m", "localworld.process_kubelet",
            "--kubeconfig", str(self.config.kubeconfig),
            "--node", name,
            "--node-index", str(booted.index),
            "--log-dir", str(self.config.log_dir / name),
        ]  # fmt: skip
        for mapping in self.config.path_map:
            argv += ["--path-map", mapping]
        log_path = self.config.log_dir / f"kubelet-{name}.log"
        with log_path.open("ab") as out:
            booted.kubelet = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=out, start_new_session=True
            )
        self.record(name, "kubelet-started")
        if booted_before:
            await self._remove_startup_taint(name)  # had it stopped between the two steps
            return
        if not gpu_count(instance_type):
            # A CPU node (a bridge's pool) has no GPU stage: ready once its kubelet runs.
            await self._remove_startup_taint(name)
            self.record(name, "cpu-ready")
            return
        await asyncio.sleep(self.config.gpu_delay)
        await self._discover_gpus(name, instance_type)
        await self._remove_startup_taint(name)
        self.record(name, "gpu-ready")

    async def _discover_gpus(self, name: str, instance_type: str) -> None:
        """GPU Feature Discovery's labels and the device plugin's nvidia.com/gpu."""
        labels = gfd_labels(instance_type)
        await self.client.request(
            "PATCH", f"/api/v1/nodes/{name}", {"metadata": {"labels": labels}}, content_type=MERGE
        )
        gpus = gpu_count(instance_type)
        if gpus:
            gpu = {GPU_RESOURCE: str(gpus)}
            await self._patch_status(name, {"capacity": gpu, "allocatable": gpu})

    async def _remove_startup_taint(self, name: str) -> None:
        """Take GPU_PENDING_TAINT off once Karpenter has registered the node (and so put it
        on: taken off before that, Karpenter would add it again)."""
        while True:
            node = await self.client.request("GET", f"/api/v1/nodes/{name}")
            if node["metadata"].get("labels", {}).get(REGISTERED_LABEL) != "true":
                await asyncio.sleep(0.2)
                continue
            taints = node["spec"].get("taints") or []
            kept = [t for t in taints if t.get("key") != GPU_PENDING_TAINT["key"]]
            if kept == taints:
                return
            # The resourceVersion makes this a compare-and-swap on the whole taint list.
            patch = {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": kept},
            }
            try:
                await self.client.request(
                    "PATCH", f"/api/v1/nodes/{name}", patch, content_type=MERGE
                )
                return
            except ApiError as error:
                if error.status != 409:
                    raise

    def on_node(self, event_type: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        if event_type == "DELETED":
            booted = self.nodes.pop(name, None)
            if booted is not None:
                task = asyncio.ensure_future(self.shut_down(booted))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return
        if name in self.nodes:
            return
        booted = BootedNode(name, self._free_index(), asyncio.ensure_future(asyncio.sleep(0)))
        booted.zone = node["metadata"].get("labels", {}).get(volumes.ZONE_LABEL)
        self.nodes[name] = booted
        booted.task = asyncio.create_task(self._boot_logged(node, booted), name=f"boot-{name}")

    async def _boot_logged(self, node: Obj, booted: BootedNode) -> None:
        try:
            await self.boot(node, booted)
        except ApiError as error:
            if error.status != 404:  # deleted while booting: nothing to do
                log.error("%s: boot failed: %s", booted.name, error)

    async def shut_down(self, booted: BootedNode, grace: float = 30.0) -> None:
        booted.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await booted.task
        process = booted.kubelet
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.record(booted.name, "gone")

    async def watch_nodes(self) -> None:
        path = "/api/v1/nodes"
        params = {"labelSelector": NODEPOOL_LABEL}
        while True:
            try:
                listed = await self.client.request("GET", path, params=params)
                names = set()
                for node in listed.get("items") or []:
                    names.add(node["metadata"]["name"])
                    self.on_node("ADDED", node)
                for gone in set(self.nodes) - names:
                    self.on_node("DELETED", {"metadata": {"name": gone}})
                version = listed["metadata"]["resourceVersion"]
                async for event in self.client.watch(path, {**params, "resourceVersion": version}):
                    if event.get("type") == "ERROR":
                        raise ApiError(int(event["object"].get("code") or 500), "watch error")
                    if event.get("type") != "BOOKMARK":
                        self.on_node(event["type"], event["object"])
            except (ApiError, OSError, TimeoutError, json.JSONDecodeError) as error:
                log.warning("node watch: %s; listing again", error)
                await asyncio.sleep(0.5)

    @property
    def volume_root(self) -> Path:
        return self.config.volume_root or self.config.log_dir / "volumes"

    async def provide_volumes(self) -> None:
        """The StorageClass, then a volume for each claim scheduled onto one of our nodes,
        and the directories of released volumes removed; polled, as the real node's is."""
        while True:
            try:
                await self._create(
                    volumes.storage_class(), "/apis/storage.k8s.io/v1/storageclasses"
                )
                break
            except (ApiError, OSError, TimeoutError) as error:
                log.warning("storage class: %s; trying again", error)
                await asyncio.sleep(VOLUME_POLL_SECONDS)
        while True:
            try:
                await self._provision_once()
            except (ApiError, OSError, TimeoutError, json.JSONDecodeError) as error:
                log.warning("volumes: %s; trying again", error)
            await asyncio.sleep(VOLUME_POLL_SECONDS)

    async def _provision_once(self) -> None:
        claims = await self.client.request("GET", "/api/v1/persistentvolumeclaims")
        for claim in claims.get("items") or []:
            booted = self.nodes.get(volumes.selected_node(claim) or "")
            if booted is None:
                continue
            path = volumes.make_directory(self.volume_root, claim)
            volume = volumes.volume_for(claim, booted.name, path, zone=booted.zone)
            if await self._create(volume, "/api/v1/persistentvolumes"):
                meta = claim["metadata"]
                self.record(booted.name, f"volume {meta['namespace']}/{meta['name']}")
        listed = await self.client.request("GET", "/api/v1/persistentvolumes")
        for volume in listed.get("items") or []:
            released = volumes.released_directory(volume, self.volume_root)
            if released is not None:
                shutil.rmtree(released, ignore_errors=True)
                with contextlib.suppress(ApiError):
                    name = volume["metadata"]["name"]
                    await self.client.request("DELETE", f"/api/v1/persistentvolumes/{name}")

    async def _create(self, body: Obj, path: str) -> bool:
        """POST `body`; False if it exists already."""
        try:
            await self.client.request("POST", path, body)
        except ApiError as error:
            if error.status != 409:
                raise
            return False
        return True

    async def shutdown(self) -> None:
        booted = list(self.nodes.values())
        self.nodes.clear()
        await asyncio.gather(*(self.shut_down(b, grace=10) for b in booted), *self._background)


async def main_async(args: argparse.Namespace) -> None:
    config = AgentConfig(
        kubeconfig=Path(args.kubeconfig),
        log_dir=Path(args.log_dir),
        gpu_delay=args.gpu_delay,
        path_map=list(args.path_map),
        events=Path(args.events) if args.events else None,
        volume_root=Path(args.volume_root) if args.volume_root else None,
    )
    config.log_dir.mkdir(parents=True, exist_ok=True)
    client = KubeClient(load_config(args.kubeconfig))
    agent = Agent(config, client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(agent.watch_nodes())
    provisioner = asyncio.create_task(agent.provide_volumes())
    print("karpenter node agent watching nodes", flush=True)
    await stop.wait()
    watcher.cancel()
    provisioner.cancel()
    await agent.shutdown()
    await client.close()


def command(
    kubeconfig: Path, log_dir: Path, path_map: dict[str, Path], gpu_delay: float, events: Path
) -> list[str]:
    """The command line of the agent (run it with `kit/` on PYTHONPATH)."""
    argv = [
        sys.executable, "-m", "localworld.karpenter_nodes",
        "--kubeconfig", str(kubeconfig),
        "--log-dir", str(log_dir),
        "--gpu-delay", str(gpu_delay),
        "--events", str(events),
    ]  # fmt: skip
    for container_path, local in path_map.items():
        argv += ["--path-map", f"{container_path}={local}"]
    return argv


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", default="/tmp/siesta-karpenter-nodes")
    parser.add_argument(
        "--gpu-delay",
        type=float,
        default=float(os.environ.get("SIESTA_GPU_DELAY", "3")),
        help="seconds from kubelet start to GPU labels and nvidia.com/gpu (real: minutes)",
    )
    parser.add_argument("--path-map", action="append", default=[], help="passed to kubelets")
    parser.add_argument("--events", help="append node events here (JSON lines)")
    parser.add_argument("--volume-root", help="the nodes' volumes (default: LOG_DIR/volumes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
