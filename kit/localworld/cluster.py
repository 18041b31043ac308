"""pytest fixtures for the real test control plane (kit/cluster).

``cluster`` (session): brings the cluster up once (kit/cluster/up.sh: builds missing
binaries, starts kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok,
adds the default fake node fleet) and tears it down at the end. A cluster that already
answers (``make cluster-up`` earlier) is reused and left running. If the cluster cannot
start the fixture fails with the tail of the build/start log; it never skips.

``namespace`` (function): a fresh namespace for one test, deleted afterwards.

Tests that use them carry ``@pytest.mark.cluster``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CLUSTER_SCRIPTS = Path(__file__).resolve().parents[1] / "cluster"
LOG_TAIL_LINES = 80


def cluster_paths() -> dict[str, str]:
    """CLUSTER_KUBECONFIG, CLUSTER_BIN_DIR etc. as kit/cluster/env.sh computes them."""
    names = [
        "CLUSTER_KUBECONFIG",
        "CLUSTER_BIN_DIR",
        "CLUSTER_DIR",
        "K8S_VERSION",
        "KWOK_VERSION",
        "HELM_VERSION",
        "ETCD_VERSION",
        "SIESTA_CLUSTER_NAME",
        "SIESTA_CACHE",
    ]
    script = f'. "{CLUSTER_SCRIPTS}/env.sh"; ' + "; ".join(
        f'printf "%s=%s\\n" {n} "${n}"' for n in names
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


@dataclass
class Cluster:
    """A running test cluster: kubeconfig, binaries and a kubectl helper."""

    kubeconfig: Path
    bin_dir: Path
    apiserver: str
    versions: dict[str, str] = field(default_factory=dict)
    started_here: bool = False

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm_path(self) -> Path:
        return self.bin_dir / "helm"

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG set, cluster binaries first on PATH."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; ``check`` raises with stderr on failure."""
        result = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def get_json(self, *args: str) -> dict[str, Any]:
        """``kubectl get ARGS -o json`` parsed."""
        parsed: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return parsed

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        """``kubectl apply`` a manifest given as a dict (any kind, or a List) or YAML text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=text)

    def service_account_kubeconfig(
        self, namespace: str, account: str, path: Path, duration: str = "6h"
    ) -> Path:
        """A kubeconfig holding only a token of `namespace/account` (no admin rights)."""
        token = self.kubectl(
            "create", "token", account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        admin = json.loads(
            self.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "siesta", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "siesta", "context": {"cluster": "siesta", "user": account}}],
            "current-context": "siesta",
        }
        path.write_text(json.dumps(config))
        return path


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def is_ready(obj: dict[str, Any] | None) -> bool:
    """Ready=True among a pod's or node's status.conditions (as the API returns it)."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def holds(what: str, probe: Callable[[], Any], seconds: float, interval: float = 0.2) -> None:
    """Watch ``probe`` for ``seconds`` and fail the moment it is falsy: "nothing happens"
    asserted over a bound, not after a blind sleep."""
    deadline = time.monotonic() + seconds
    while True:
        if not probe():
            pytest.fail(
                f"{what}: no longer true after {seconds - (deadline - time.monotonic()):.1f}s"
            )
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def _answers(kubectl: Path, kubeconfig: Path) -> bool:
    if not (kubectl.exists() and kubeconfig.exists()):
        return False
    probe = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def _run_script(name: str, log: Path) -> subprocess.CompletedProcess[str]:
    timeout = float(os.environ.get("SIESTA_CLUSTER_UP_TIMEOUT", "3600"))
    with log.open("a") as log_file:
        return subprocess.run(
            ["bash", str(CLUSTER_SCRIPTS / name)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            timeout=timeout,
            check=False,
        )


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:])


def start_cluster() -> Cluster:
    """Start the cluster, or reuse (and check) a running one; RuntimeError with the log tail.

    up.sh runs either way: on a running cluster it only checks that every component is
    alive (about a second) and recreates the cluster if one is not.
    """
    paths = cluster_paths()
    bin_dir = Path(paths["CLUSTER_BIN_DIR"])
    was_running = _answers(bin_dir / "kubectl", Path(paths["CLUSTER_KUBECONFIG"]))
    log = Path(paths["SIESTA_CACHE"]) / f"cluster-up-{paths['SIESTA_CLUSTER_NAME']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    result = _run_script("up.sh", log)
    if result.returncode != 0:
        raise RuntimeError(
            f"kit/cluster/up.sh exited {result.returncode}; last lines of {log}:\n" + _tail(log)
        )
    cluster = Cluster(
        kubeconfig=Path(result.stdout.strip().splitlines()[-1]),
        bin_dir=bin_dir,
        apiserver="",
        versions={
            k: paths[k] for k in ("K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION")
        },
        started_here=not was_running,
    )
    cluster.apiserver = cluster.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout.strip()
    return cluster


def stop_cluster() -> None:
    paths = cluster_paths()
    log = Path(paths["SIESTA_CACHE"]) / f"cluster-down-{paths['SIESTA_CLUSTER_NAME']}.log"
    log.write_text("")
    result = _run_script("down.sh", log)
    if result.returncode != 0:
        raise RuntimeError(f"kit/cluster/down.sh exited {result.returncode}:\n{_tail(log)}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The real control plane, started once per session (reused if already running)."""
    try:
        running = start_cluster()
    except Exception as exc:  # any failure to start is reported, never skipped
        pytest.fail(f"test cluster did not start: {exc}", pytrace=False)
    yield running
    if running.started_here and os.environ.get("SIESTA_KEEP_CLUSTER") != "1":
        stop_cluster()


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{base or 't'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    # Pods need the namespace's default ServiceAccount, which the controller manager adds.
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
