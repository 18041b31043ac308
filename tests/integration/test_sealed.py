"""The local world is sealed: every address it hands out ends on this machine.

kwok gives the pods of its simulated nodes addresses in 10.0.0.0/16 and reports them Ready,
though nothing listens there; Services get ClusterIPs in 10.96.0.0/16. Without the seal
(kit/cluster/seal.sh, run by up.sh) a connection to such an address leaves by the default
route and reaches whatever answers outside. Here every pod, node and Service address the
API server lists must stay on this machine (`ip route get`), a connection to a simulated pod
must fail at once, and the gateway, given such a pod as a ready replica, must answer with
its own error instead of anything from outside.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import endpoint_slice, install_crd, metric, model_manifest
from localworld.localnet import ensure_pod_network, in_pod_network
from localworld.nodes import SIMULATED_GPU_TOLERATIONS
from localworld.procs import Proc, start_gateway

pytestmark = [pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
SEAL = ROOT / "kit" / "cluster" / "seal.sh"
# The interfaces the world creates: the ClusterIP void, the process kubelet's pod network,
# the real node's CNI bridge; and loopback.
WORLD_DEVICES = {"lo", "siesta-void", "siesta-host", "siesta-cni0"}
STAYS = ("local", "unreachable", "blackhole", "prohibit")


def route(address: str) -> str:
    """`ip route get ADDRESS`: the route, or the kernel's refusal for an unreachable one."""
    result = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    return (result.stdout or result.stderr).strip()


def stays_here(route_text: str) -> bool:
    if route_text.startswith(STAYS) or "No route to host" in route_text:
        return True
    device = re.search(r"\bdev (\S+)", route_text)
    return device is not None and device.group(1) in WORLD_DEVICES


def listed_addresses(cluster: Cluster) -> dict[str, str]:
    """Every pod, node and Service address the API server lists -> what it belongs to."""
    found: dict[str, str] = {}
    for node in cluster.get_json("nodes")["items"]:
        for entry in node["status"].get("addresses") or []:
            if entry["type"] in ("InternalIP", "ExternalIP"):
                found[entry["address"]] = f"node {node['metadata']['name']}"
    for pod in cluster.get_json("pods", "-A")["items"]:
        for entry in pod["status"].get("podIPs") or []:
            found[entry["ip"]] = f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}"
    for service in cluster.get_json("services", "-A")["items"]:
        for ip in service["spec"].get("clusterIPs") or []:
            if ip != "None":
                found[ip] = (
                    f"service {service['metadata']['namespace']}/{service['metadata']['name']}"
                )
    return {ip: owner for ip, owner in found.items() if ipaddress.ip_address(ip).version == 4}


def simulated_pod(name: str) -> dict[str, Any]:
    """A pod for kwok's simulated g4dn node: Ready at once, with a fake address."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4", "siesta.test/pool": "g4dn"},
            "tolerations": SIMULATED_GPU_TOLERATIONS,
            "containers": [{"name": "server", "image": "siesta-server:test"}],
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8080}]},
    }


@pytest.fixture
def fake_pod_ip(cluster: Cluster, namespace: str) -> str:
    cluster.apply(simulated_pod("fake"), namespace)
    cluster.apply(service("fake"), namespace)

    def address() -> str:
        return str(cluster.get_json("pod", "fake", "-n", namespace)["status"].get("podIP") or "")

    wait_for("the simulated pod has an address", lambda: bool(address()), 60)
    return address()


@pytest.fixture
def gateway(cluster: Cluster, tmp_path: Path) -> Iterator[Proc]:
    install_crd(cluster)
    proc = start_gateway(cluster.kubeconfig, log_dir=tmp_path)
    yield proc
    proc.stop()


def test_the_seal_is_installed() -> None:
    result = subprocess.run([str(SEAL), "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_listed_address_stays_on_this_machine(cluster: Cluster, fake_pod_ip: str) -> None:
    addresses = listed_addresses(cluster)
    # Not vacuous: a simulated pod and Services are among them. (kwok's nodes list only a
    # Hostname; nodes with a kubelet list their InternalIP, and are checked when present.)
    assert fake_pod_ip in addresses
    assert any(owner.startswith("service") for owner in addresses.values())
    leaving = {
        f"{owner} {ip}": route(ip) for ip, owner in addresses.items() if not stays_here(route(ip))
    }
    assert leaving == {}


def test_a_connection_to_a_simulated_pod_fails_here_at_once(fake_pod_ip: str) -> None:
    started = time.monotonic()
    with (
        pytest.raises(OSError, match="No route to host"),
        socket.create_connection((fake_pod_ip, 8080), timeout=5),
    ):
        pass
    assert time.monotonic() - started < 1.0


def test_a_stray_cluster_ip_is_refused_here() -> None:
    """A ClusterIP no Service holds: kube-proxy has no rule for it, the seal rejects it."""
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("10.96.254.254", 80), 5):
        pass
    assert time.monotonic() - started < 1.0


def test_a_process_pod_cannot_leave_the_machine() -> None:
    """A process-kubelet pod (the siesta-pods namespace) connecting to the uplink's gateway:
    refused here at once (no route out of the namespace; the seal rejects forwarding too)."""
    ensure_pod_network()
    gateway = route("1.1.1.1").split(" via ")[-1].split()[0]
    probe = (
        "import socket, sys, time\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    socket.create_connection(({gateway!r}, 80), timeout=5)\n"
        "    sys.exit('connected')\n"
        "except OSError as error:\n"
        "    print(type(error).__name__, round(time.monotonic() - t, 3))\n"
    )
    result = subprocess.run(
        in_pod_network([sys.executable, "-c", probe]), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kind, seconds = result.stdout.split()
    assert kind in ("OSError", "ConnectionRefusedError")
    assert float(seconds) < 1.0


def test_the_gateway_answers_its_own_error_for_a_simulated_replica(
    cluster: Cluster, namespace: str, fake_pod_ip: str, gateway: Proc
) -> None:
    """The operator never sends a model to a simulated node (it would not tolerate the
    taint); if a replica's address is fake all the same, every connect fails here and the
    gateway ends the request with its own 503 at wakeTimeout."""
    cluster.apply(model_manifest("sealed", namespace, wake_timeout="3s"))
    cluster.apply(endpoint_slice("sealed", namespace, fake_pod_ip))
    wait_for(
        "the gateway lists the model",
        lambda: "sealed" in httpx.get(f"{gateway.url}/v1/models").text,
        15,
    )
    started = time.monotonic()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sealed", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "Retry-After" in response.headers
    assert response.json()["error"]["type"]
    assert elapsed < 10
    assert metric(gateway.url, "siesta_gateway_upstream_errors_total", {"kind": "connect"}) > 0
