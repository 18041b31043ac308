"""Pod-like IP addresses for model servers the tests run as processes.

The API server refuses loopback addresses (127.0.0.0/8) in EndpointSlices, so a process that
should look like a pod needs a pod-network address (10.244.N.M). Those addresses live in a
network namespace of the test suite's own (`siesta-pods`), joined to this machine by a veth
pair: the gateway and the probes reach them from here, and nothing leaves the machine.
Servers bound to such an address run inside the namespace (`in_pod_network(argv)`).
Needs CAP_NET_ADMIN (root, or `sudo -n ip`). The namespace is made once and kept for the
next run; `ip netns del siesta-pods` removes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

POD_NETWORK_PREFIX = "10.244"
NETNS = "siesta-pods"
HOST_LINK = "siesta-host"  # this machine's end of the veth pair
POD_LINK = "siesta-pods"  # the namespace's end, holding every pod address
HOST_ADDRESS = f"{POD_NETWORK_PREFIX}.0.1"
PREFIX_LENGTH = 16
_LOCK = Path("/tmp/siesta-pod-network.lock")
_CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = subprocess.run([*prefix, ip, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PermissionError(
            f"`ip {' '.join(args)}` failed ({result.stderr.strip()}); local pods need "
            "CAP_NET_ADMIN: run as root or allow `sudo -n ip`"
        )
    return result


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with _LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _network_is_up() -> bool:
    return (
        Path(f"/run/netns/{NETNS}").exists()
        and _ip("-n", NETNS, "link", "show", POD_LINK).returncode == 0
        and HOST_ADDRESS in _ip("addr", "show", HOST_LINK).stdout
    )


def ensure_pod_network() -> None:
    """Create the namespace and its veth pair once (idempotent, safe across processes)."""
    with _machine_lock():
        if not _network_is_up():
            _create_pod_network()
        # Linux deletes every secondary address of a subnet with its primary (the first one
        # added) unless secondaries are promoted: one kubelet (node address) leaving would
        # take every other node's pod addresses with it.
        _ip(
            "netns", "exec", NETNS, "sh", "-c",
            f"echo 1 > /proc/sys/net/ipv4/conf/{POD_LINK}/promote_secondaries",
            check=True,
        )  # fmt: skip


def _create_pod_network() -> None:
    _ip("netns", "del", NETNS)  # a half-made one from an interrupted run
    _ip("link", "del", HOST_LINK)
    _ip("netns", "add", NETNS, check=True)
    _ip(
        "link",
        "add",
        HOST_LINK,
        "type",
        "veth",
        "peer",
        "name",
        POD_LINK,
        "netns",
        NETNS,
        check=True,
    )
    _ip("addr", "add", f"{HOST_ADDRESS}/{PREFIX_LENGTH}", "dev", HOST_LINK, check=True)
    _ip("link", "set", HOST_LINK, "up", check=True)
    _ip("-n", NETNS, "link", "set", "lo", "up", check=True)
    _ip("-n", NETNS, "link", "set", POD_LINK, "up", check=True)


def add_local_address(address: str) -> None:
    """Give the pod network `address` (idempotent); raises with the reason if not allowed."""
    ensure_pod_network()
    result = _ip("-n", NETNS, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", POD_LINK)
    if result.returncode != 0 and "File exists" not in result.stderr:
        raise PermissionError(f"cannot add {address} to the pod network ({result.stderr.strip()})")


def remove_local_address(address: str) -> None:
    _ip("-n", NETNS, "addr", "del", f"{address}/{PREFIX_LENGTH}", "dev", POD_LINK)


def pod_address(node_index: int, pod_index: int) -> str:
    """10.244.N.M: N for the node (kubelet, 1..254), M for the pod (1..254)."""
    return f"{POD_NETWORK_PREFIX}.{node_index}.{pod_index}"


def in_pod_network(argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` inside the pod network (to bind a pod address)."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n", "-E"]
    return [*prefix, ip, "netns", "exec", NETNS, *argv]


def listen_in_pod_network(address: str, port: int) -> socket.socket:
    """A listening TCP socket on a pod address, for tests that play a misbehaving replica.

    A socket belongs to the namespace it was made in, so it is made by a short-lived thread
    that joins the pod network (setns affects only the calling thread).
    """
    made: list[socket.socket] = []
    failure: list[BaseException] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{NETNS}") as namespace:
                if libc.setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the pod network failed")
            made.append(socket.create_server((address, port)))
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return made[0]


@contextlib.contextmanager
def replica_in_pod_network(
    address: str, port: int, handle: Callable[[socket.socket], None]
) -> Iterator[None]:
    """A misbehaving replica on pod address `address`: each accepted connection goes to
    `handle` (in one thread, one at a time) until the block ends; then the address goes."""
    add_local_address(address)
    listener = listen_in_pod_network(address, port)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                handle(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        listener.close()
        remove_local_address(address)
