"""Pod-like IP addresses on this machine, for model servers the tests run as processes.

The API server refuses loopback addresses (127.0.0.0/8) in EndpointSlices, so a local
process that should look like a pod gets a private address of its own, added to the
loopback interface as a /32 (needs CAP_NET_ADMIN: root, or `sudo` when available). Such an
address is only reachable from this machine, like 127.0.0.x, but passes validation.
"""

from __future__ import annotations

import os
import shutil
import subprocess

POD_NETWORK_PREFIX = "10.244"


def _ip_command(*args: str) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run([*prefix, ip, *args], capture_output=True, text=True, check=False)


def add_local_address(address: str) -> None:
    """Make `address` local (idempotent); raises with the reason if that is not allowed."""
    result = _ip_command("addr", "add", f"{address}/32", "dev", "lo")
    if result.returncode != 0 and "File exists" not in result.stderr:
        raise PermissionError(
            f"cannot add {address} to the loopback interface ({result.stderr.strip()}); "
            "local pods need CAP_NET_ADMIN: run as root or allow `sudo -n ip`"
        )


def remove_local_address(address: str) -> None:
    _ip_command("addr", "del", f"{address}/32", "dev", "lo")


def pod_address(node_index: int, pod_index: int) -> str:
    """10.244.N.M: N for the node (kubelet), M for the pod (1..254)."""
    return f"{POD_NETWORK_PREFIX}.{node_index}.{pod_index}"
