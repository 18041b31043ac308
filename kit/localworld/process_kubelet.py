"""A test-only kubelet that runs the pods of one node as local processes.

Pods bound to the node (a fake GPU node kwok does not manage, see kit/localworld/nodes.py)
run as real `siesta-server` processes: the container image maps to the local executable,
the pod's env and args are kept, paths inside the container map to local directories. Each
pod gets a pod-like address (10.244.N.M in the test pod network, see localnet.py; the
API server refuses 127.0.0.0/8 in EndpointSlices) and the server listens there on its
container port. The kubelet reports what a real one would: phase Running, container
statuses, podIP, and the Ready condition from probing the real `/health`; so the
EndpointSlice controller publishes ready endpoints. On deletion it runs the preStop sleep,
sends SIGTERM, honours the grace period (then SIGKILL) and removes the pod object. It
keeps the node Ready (conditions and the node Lease) so the node lifecycle controller
never taints it.

    PYTHONPATH=kit:tests python -m localworld.process_kubelet --kubeconfig K --node proc-gpu-0 \
        --node-index 1 --create-node g4dn --label siesta.test/kubelet=process \
        --path-map /models=/tmp/models

(Run it as a module: a script's own folder goes first on sys.path, and kit/localworld has a
module named like the standard library's `operator`.)

Readiness is probed every 0.1 s (a real kubelet waits `periodSeconds`), so that timings
measured through it show Siesta's delays rather than the probe period.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from localworld.localnet import add_local_address, in_pod_network, pod_address, remove_local_address
from localworld.nodes import PROCESS_KUBELET_TAINT, gpu_node_manifest
from siesta.api.contract import REQUIRE_GPU_ENV
from siesta.gateway.kube import ApiError, KubeClient, load_config

log = logging.getLogger("process-kubelet")
Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
HEARTBEAT_SECONDS = 10.0
# What a kubelet keeps of a termination message, and of the log when it falls back to it.
MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class KubeletConfig:
    node: str
    node_index: int
    server_bin: Path
    log_dir: Path
    path_map: list[tuple[str, str]] = field(default_factory=list)
    probe_interval: float = 0.1

    @property
    def node_ip(self) -> str:
        return pod_address(self.node_index, 254)


def map_path(
    value: str,
    config: KubeletConfig,
    mounts: dict[str, Path],
    claimed: dict[str, Path] | None = None,
) -> str:
    """A container path (or file:// URI) as a local path: the mounts of claims first (a
    volume's directory), then --path-map, then the other mounts."""
    scheme = "file://" if value.startswith("file://") else ""
    path = value.removeprefix("file://")
    if not path.startswith("/"):
        return value
    for mount, local_dir in (claimed or {}).items():
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return str(local_dir) + path[len(mount.rstrip("/")) :]
    for prefix, local in sorted(config.path_map, key=lambda p: -len(p[0])):
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return local + path[len(prefix.rstrip("/")) :]
    for mount, local_dir in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return str(local_dir) + path[len(mount.rstrip("/")) :]
    return scheme + path


class PodRunner:
    """One pod: its process, its probes, its status, its termination."""

    def __init__(self, kubelet: ProcessKubelet, pod: Obj, address: str) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.address = address
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.container: Obj = pod["spec"]["containers"][0]
        self.root = kubelet.config.log_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.deleting = asyncio.Event()
        self.gone = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.ready = False
        self.started_at = now_rfc3339()
        self.container_started_at = ""
        self.last_state: Obj = {}
        self.waiting: Obj | None = None
        self.log_offset = 0

    @property
    def port(self) -> int:
        for port in self.container.get("ports") or []:
            return int(port["containerPort"])
        return 8080

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    # --- the process --------------------------------------------------------------------

    def _environment(
        self, mounts: dict[str, Path], claimed: dict[str, Path] | None = None
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG"}}
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.kubelet.config.node,
            "status.podIP": self.address,
            "status.hostIP": self.kubelet.config.node_ip,
        }
        for item in self.container.get("env") or []:
            if "value" in item:
                value = str(item["value"])
                env[item["name"]] = map_path(value, self.kubelet.config, mounts, claimed)
            elif ref := (item.get("valueFrom") or {}).get("fieldRef"):
                env[item["name"]] = fields.get(ref.get("fieldPath", ""), "")
        # This node stands in for a GPU node but runs the server on the CPU: the model must
        # not refuse to start for want of the GPU that the node's labels promise.
        env.pop(REQUIRE_GPU_ENV, None)
        # The pod's own address, as if 0.0.0.0 inside its network namespace.
        env["SIESTA_HOST"] = self.address
        env["SIESTA_PORT"] = str(self.port)
        # A kubelet bind-mounts an empty file at terminationMessagePath; processes here
        # share one filesystem, so the server is told where its (per-pod) file is instead.
        env.setdefault("SIESTA_TERMINATION_LOG", str(self.message_file))
        return env

    @property
    def message_file(self) -> Path:
        return self.root / "termination-log"

    @property
    def log_path(self) -> Path:
        return self.kubelet.config.log_dir / f"{self.namespace}_{self.name}.log"

    def termination_message(self, exit_code: int | None) -> str:
        """What a kubelet reports: the file's contents, else (FallbackToLogsOnError, failed)
        the end of this run's log."""
        with contextlib.suppress(OSError):
            text = self.message_file.read_bytes()[:MESSAGE_BYTES].decode(errors="replace")
            if text.strip():
                return text
        policy = self.container.get("terminationMessagePolicy", "File")
        if policy != "FallbackToLogsOnError" or not exit_code:
            return ""
        with contextlib.suppress(OSError), self.log_path.open("rb") as handle:
            handle.seek(self.log_offset)
            lines = handle.read().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            return "\n".join(lines)[-FALLBACK_LOG_BYTES:]
        return ""

    async def _claimed_directories(self) -> dict[str, Path]:
        """Volume name -> the directory of its claim's PersistentVolume (hostPath, as the
        local provisioners make them): the pod sees what an earlier pod left there."""
        found = {}
        for volume in self.pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            path = f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
            bound = (await self.kubelet.client.request("GET", path))["spec"].get("volumeName")
            if not bound:
                continue
            pv = await self.kubelet.client.request("GET", f"/api/v1/persistentvolumes/{bound}")
            if host_path := (pv["spec"].get("hostPath") or {}).get("path"):
                found[volume["name"]] = Path(host_path)
        return found

    async def _start_process(self) -> None:
        mounts, claimed_mounts = {}, {}
        claimed = await self._claimed_directories()
        for mount in self.container.get("volumeMounts") or []:
            local = claimed.get(mount["name"]) or self.root / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = local
            if mount["name"] in claimed:
                claimed_mounts[mount["mountPath"]] = local
        env = self._environment(mounts, claimed_mounts)
        args = [str(a) for a in self.container.get("args") or []]
        self.message_file.write_bytes(b"")  # a fresh, empty file for every container run
        log_file = self.log_path.open("ab")
        log_file.write(
            f"--- {now_rfc3339()} start (image {self.container.get('image')})\n".encode()
        )
        log_file.flush()
        self.log_offset = log_file.tell()
        self.process = await asyncio.create_subprocess_exec(
            *in_pod_network([str(self.kubelet.config.server_bin), *args]),
            env=env,
            cwd=self.root,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
        log_file.close()
        self.container_started_at = now_rfc3339()
        log.info(
            "%s/%s: started pid %s on %s:%s",
            self.namespace,
            self.name,
            self.process.pid,
            self.address,
            self.port,
        )

    async def _probe(self) -> bool:
        url = f"http://{self.address}:{self.port}/health"
        try:
            async with self.kubelet.http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # --- status -------------------------------------------------------------------------

    def _status(self, *, running: bool, terminated: Obj | None = None) -> Obj:
        ready = "True" if self.ready else "False"
        state: Obj
        if running:
            state = {"running": {"startedAt": self.container_started_at}}
        elif terminated is not None:
            state = {"terminated": terminated}
        else:
            state = {"waiting": self.waiting or {"reason": "ContainerCreating"}}
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": ready},
            {"type": "ContainersReady", "status": ready},
            {"type": "PodScheduled", "status": "True"},
        ]
        for condition in conditions:
            condition["lastTransitionTime"] = now_rfc3339()
        container_status: Obj = {
            "name": self.container["name"],
            "image": self.container.get("image", ""),
            "imageID": "",
            "containerID": f"process://{self.process.pid}" if self.process else "",
            "ready": self.ready,
            "started": running,
            "restartCount": self.restarts,
            "state": state,
        }
        if self.last_state:
            container_status["lastState"] = self.last_state
        return {
            "status": {
                "phase": "Running" if running or self.restarts else "Pending",
                "conditions": conditions,
                "containerStatuses": [container_status],
                "podIP": self.address,
                "podIPs": [{"ip": self.address}],
                "hostIP": self.kubelet.config.node_ip,
                "hostIPs": [{"ip": self.kubelet.config.node_ip}],
                "startTime": self.started_at,
            }
        }

    async def _write_status(self, body: Obj) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            await self.kubelet.client.request("PATCH", path, body, content_type=MERGE)
        except ApiError as error:
            if error.status != 404:
                log.warning("%s/%s: status: %s", self.namespace, self.name, error)

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            add_local_address(self.address)
            await self._write_status(self._status(running=False))
            while not self.deleting.is_set():
                await self._start_process()
                await self._write_status(self._status(running=True))
                await self._watch_process()
                if self.deleting.is_set():
                    break
                code = self.process.returncode if self.process else None
                terminated = {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "finishedAt": now_rfc3339(),
                    "startedAt": self.container_started_at,
                    "containerID": f"process://{self.process.pid}" if self.process else "",
                }
                message = self.termination_message(code)
                if message:
                    terminated["message"] = message
                self.last_state = {"terminated": terminated}
                self.restarts += 1
                self.ready = False
                # Like a kubelet between restarts: waiting in CrashLoopBackOff, the exit in
                # lastState (shorter back-offs than a kubelet's 10 s doubling to 5 min).
                backoff = min(2.0**self.restarts, 10.0)
                self.waiting = {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:.0f}s restarting failed "
                    f"container={self.container['name']} pod={self.name}_{self.namespace}"
                    f"({self.uid})",
                }
                await self._write_status(self._status(running=False))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.deleting.wait(), backoff)
                self.waiting = None
            await self._terminate()
        finally:
            await self._kill()
            remove_local_address(self.address)
            self.gone.set()
            self.kubelet.forget(self)

    async def _watch_process(self) -> None:
        """Probe readiness until the process exits or the pod is being deleted."""
        assert self.process is not None
        while self.process.returncode is None and not self.deleting.is_set():
            ok = await self._probe()
            if ok != self.ready and self.process.returncode is None:
                self.ready = ok
                await self._write_status(self._status(running=True))
                # CLOCK_MONOTONIC is shared by every process here: benchmarks line it up.
                log.info(
                    "%s/%s: ready=%s written at monotonic %.6f",
                    self.namespace,
                    self.name,
                    ok,
                    time.monotonic(),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.deleting.wait(), self.kubelet.config.probe_interval)

    async def _terminate(self) -> None:
        meta = self.pod["metadata"]
        grace = float(
            meta.get("deletionGracePeriodSeconds")
            or self.pod["spec"].get("terminationGracePeriodSeconds")
            or 30
        )
        deadline = time.monotonic() + grace
        pre_stop = ((self.container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
        if pre_stop and self.process and self.process.returncode is None:
            await self._probing_sleep(min(float(pre_stop.get("seconds", 0)), grace), deadline)
        if self.process and self.process.returncode is None:
            log.info("%s/%s: SIGTERM (grace %.0fs)", self.namespace, self.name, grace)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            await self._probing_sleep(max(deadline - time.monotonic(), 0.0), deadline)
        await self._kill()
        # As a kubelet does once the containers are gone: remove the object for good.
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            await self.kubelet.client.request("DELETE", path, body)
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("%s/%s: delete: %s", self.namespace, self.name, error)
        log.info("%s/%s: terminated", self.namespace, self.name)

    async def _probing_sleep(self, seconds: float, deadline: float) -> None:
        """Wait `seconds` (or until the process exits), keeping the Ready condition true."""
        end = min(time.monotonic() + seconds, deadline)
        while time.monotonic() < end and self.process and self.process.returncode is None:
            ok = await self._probe()
            if ok != self.ready and self.process.returncode is None:
                self.ready = ok
                await self._write_status(self._status(running=True))
            await asyncio.sleep(
                min(self.kubelet.config.probe_interval, max(end - time.monotonic(), 0))
            )

    async def _kill(self) -> None:
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    async def stop(self, grace: float = 5.0) -> None:
        """Kubelet shutdown: end the process (pod objects stay, like a node going away)."""
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        await self._kill()


class ProcessKubelet:
    def __init__(self, config: KubeletConfig, client: KubeClient) -> None:
        self.config = config
        self.client = client
        self.runners: dict[str, PodRunner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._next_address = 1
        self._background: set[asyncio.Future[None]] = set()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def _allocate(self) -> str:
        used = {r.address for r in self.runners.values()}
        for _ in range(253):
            candidate = pod_address(self.config.node_index, self._next_address)
            self._next_address = self._next_address % 253 + 1
            if candidate not in used:
                return candidate
        raise RuntimeError("no free pod address on this node")

    def forget(self, runner: PodRunner) -> None:
        self.runners.pop(runner.uid, None)
        self.tasks.pop(runner.uid, None)

    # --- node ---------------------------------------------------------------------------

    async def register(self, pool: str | None, labels: dict[str, str], gpus: int) -> None:
        if pool is not None:
            manifest = gpu_node_manifest(
                self.config.node, pool, managed_by_kwok=False, labels=labels
            )
            # Only pods meant for this kubelet land here: others keep to kwok's nodes.
            manifest["spec"]["taints"].append(PROCESS_KUBELET_TAINT)
            capacity = manifest["status"]["capacity"]
            capacity.update({"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": str(gpus)})
            manifest["status"]["allocatable"] = dict(capacity)
            try:
                await self.client.request("POST", "/api/v1/nodes", manifest)
            except ApiError as error:
                if error.status != 409:
                    raise
                await self.client.request(
                    "PATCH",
                    f"/api/v1/nodes/{self.config.node}",
                    {
                        "metadata": {"labels": manifest["metadata"]["labels"]},
                        "spec": {"taints": manifest["spec"]["taints"]},
                    },
                    content_type=MERGE,
                )
            await self.client.request(
                "PATCH",
                f"/api/v1/nodes/{self.config.node}/status",
                {"status": manifest["status"]},
                content_type=MERGE,
            )
        await self.heartbeat()

    async def heartbeat(self) -> None:
        stamp = now_rfc3339()
        conditions = [
            {"type": t, "status": "False", "reason": f"KubeletHasNo{t}", "message": "ok"}
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ] + [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "process kubelet is posting ready status",
            }
        ]
        for condition in conditions:
            condition["lastHeartbeatTime"] = stamp
            condition["lastTransitionTime"] = stamp
        status = {
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.config.node_ip},
                {"type": "Hostname", "address": self.config.node},
            ],
            "nodeInfo": {
                "kubeletVersion": "process-kubelet",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "process://",
            },
        }
        await self.client.request(
            "PATCH",
            f"/api/v1/nodes/{self.config.node}/status",
            {"status": status},
            content_type=MERGE,
        )
        lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        spec = {
            "holderIdentity": self.config.node,
            "leaseDurationSeconds": 40,
            "renewTime": micro_now(),
        }
        try:
            await self.client.request(
                "PATCH", f"{lease_path}/{self.config.node}", {"spec": spec}, content_type=MERGE
            )
        except ApiError as error:
            if error.status != 404:
                raise
            await self.client.request(
                "POST",
                lease_path,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.config.node, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.heartbeat()
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("heartbeat failed: %s", error)

    # --- pods ---------------------------------------------------------------------------

    def on_pod(self, event_type: str, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        runner = self.runners.get(uid)
        if event_type == "DELETED":
            if runner is not None:
                runner.deleting.set()
            return
        if runner is not None:
            runner.update(pod)
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not meta.get(
            "deletionTimestamp"
        ):
            return
        if meta.get("deletionTimestamp"):
            # Never started here (or started by an earlier kubelet): nothing runs, remove it.
            task = asyncio.ensure_future(self._force_delete(pod))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        runner = PodRunner(self, pod, self._allocate())
        self.runners[uid] = runner
        self.tasks[uid] = asyncio.create_task(runner.run(), name=f"pod-{meta['name']}")

    async def _force_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(ApiError):
            await self.client.request("DELETE", path, body)

    async def watch_pods(self) -> None:
        path = "/api/v1/pods"
        params = {"fieldSelector": f"spec.nodeName={self.config.node}"}
        while True:
            try:
                listed = await self.client.request("GET", path, params=params)
                for pod in listed.get("items") or []:
                    self.on_pod("ADDED", pod)
                version = listed["metadata"]["resourceVersion"]
                while True:
                    async for event in self.client.watch(
                        path, {**params, "resourceVersion": version}
                    ):
                        if event.get("type") == "ERROR":
                            raise ApiError(int(event["object"].get("code") or 500), "watch error")
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            self.on_pod(event["type"], obj)
            except (ApiError, aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as error:
                log.warning("pod watch: %s; listing again", error)
                await asyncio.sleep(0.5)

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(r.stop() for r in list(self.runners.values())), return_exceptions=True
        )
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self._http is not None:
            await self._http.close()


async def main_async(args: argparse.Namespace) -> None:
    config = KubeletConfig(
        node=args.node,
        node_index=args.node_index,
        server_bin=Path(args.server_bin),
        log_dir=Path(args.log_dir),
        path_map=[tuple(p.split("=", 1)) for p in args.path_map],  # type: ignore[misc]
    )
    config.log_dir.mkdir(parents=True, exist_ok=True)
    # The node's own address, and the proof that pod addresses can be added (root needed).
    try:
        add_local_address(config.node_ip)
    except PermissionError as error:
        sys.exit(f"process kubelet: {error}")
    client = KubeClient(load_config(args.kubeconfig))
    kubelet = ProcessKubelet(config, client)
    labels = dict(label.split("=", 1) for label in args.label)
    await kubelet.register(args.create_node, labels, args.gpus)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(kubelet.watch_pods()), asyncio.create_task(kubelet.heartbeats())]
    print(f"process kubelet for node {config.node} ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await kubelet.shutdown()
    if args.delete_node_on_exit:
        with contextlib.suppress(ApiError):
            await client.request("DELETE", f"/api/v1/nodes/{config.node}")
    await client.close()
    remove_local_address(config.node_ip)


def command(
    kubeconfig: Path,
    node: str,
    node_index: int,
    model_dir: Path,
    log_dir: Path,
    labels: dict[str, str],
) -> list[str]:
    """The command line that runs a process kubelet for a new g4dn-like node `node`
    (run it with `kit/` on PYTHONPATH); the node is deleted when the kubelet exits."""
    argv = [
        sys.executable, "-m", "localworld.process_kubelet",
        "--kubeconfig", str(kubeconfig),
        "--node", node,
        "--node-index", str(node_index),
        "--create-node", "g4dn",
        "--path-map", f"/models={model_dir}",
        "--log-dir", str(log_dir),
        "--delete-node-on-exit",
    ]  # fmt: skip
    return argv + [f"--label={key}={value}" for key, value in labels.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True, help="node to serve (kwok must not manage it)")
    parser.add_argument("--node-index", type=int, default=1, help="pods get 10.244.INDEX.M (1-253)")
    parser.add_argument("--create-node", metavar="POOL", help="create the node first (g4dn or g5)")
    parser.add_argument(
        "--gpus", type=int, default=4, help="nvidia.com/gpu capacity (with --create-node)"
    )
    parser.add_argument(
        "--label", action="append", default=[], help="node label k=v (with --create-node)"
    )
    parser.add_argument(
        "--path-map",
        action="append",
        default=[],
        help="CONTAINER_PATH=LOCAL_PATH for model files (repeatable)",
    )
    parser.add_argument("--server-bin", default=str(Path(sys.executable).parent / "siesta-server"))
    parser.add_argument("--log-dir", default="/tmp/siesta-process-kubelet")
    parser.add_argument("--delete-node-on-exit", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
