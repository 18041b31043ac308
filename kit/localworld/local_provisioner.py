"""A local-path volume provisioner for the test cluster's kubelet-run nodes.

Like Rancher's local-path-provisioner: a StorageClass ``siesta-local`` (default class,
``WaitForFirstConsumer``) whose claims get a directory on the node that the scheduler picked
(annotation ``volume.kubernetes.io/selected-node``), as a ``hostPath`` PersistentVolume pinned
to that node. Directories are world-writable (0777) because the kubelet applies no fsGroup
to hostPath volumes and pods run as non-root users. A released volume (reclaim ``Delete``)
is removed with its directory.

Two users: this process, next to the real node's kubelet (kit/cluster/node.sh), and the
Karpenter node agent (kit/localworld/karpenter_nodes.py), which serves the nodes it boots
with the same functions. Karpenter's nodes come and go, so their volumes are pinned to the
node's zone instead (``zone=``), as an EBS volume is: a later node in that zone mounts the
same directory (one machine, one filesystem), and a node in another zone cannot. Run as a
process:

    python3 -m localworld.local_provisioner --kubeconfig K --kubectl KUBECTL --node real-0 \
        --root DIR

Standard library only (kubectl through subprocess), polling twice a second: a test cluster
has a handful of claims.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROVISIONER = "siesta.test/local-path"
STORAGE_CLASS = "siesta-local"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONER_ANNOTATIONS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
POLL_SECONDS = 0.5
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"

Obj = dict[str, Any]


def storage_class() -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_for(claim: Obj, node: str, path: Path, zone: str | None = None) -> Obj:
    """The PersistentVolume that satisfies `claim` with directory `path` on `node`; with
    `zone`, usable from any node of that zone (a zonal volume, as on EBS)."""
    meta = claim["metadata"]
    key, value = (ZONE_LABEL, zone) if zone else (HOSTNAME_LABEL, node)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(path), "type": "Directory"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
                    ]
                }
            },
        },
    }


def volume_name(claim: Obj) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def selected_node(claim: Obj) -> str | None:
    """The node a pending claim of our class, with no volume yet, was scheduled onto."""
    meta = claim["metadata"]
    annotations = meta.get("annotations") or {}
    wanted = (
        claim.get("status", {}).get("phase") == "Pending"
        and not claim["spec"].get("volumeName")
        and any(annotations.get(key) == PROVISIONER for key in PROVISIONER_ANNOTATIONS)
        and not meta.get("deletionTimestamp")
    )
    return annotations.get(SELECTED_NODE) if wanted else None


def wants_volume(claim: Obj, node: str) -> bool:
    """A pending claim of our class, scheduled onto our node, with no volume yet."""
    return selected_node(claim) == node


def make_directory(root: Path, claim: Obj) -> Path:
    path = root / volume_name(claim)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def released_directory(volume: Obj, root: Path) -> Path | None:
    """The directory under `root` of one of our volumes that its claim let go, else None."""
    annotations = volume["metadata"].get("annotations") or {}
    if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
        return None
    if volume.get("status", {}).get("phase") not in {"Released", "Failed"}:
        return None
    path = Path((volume["spec"].get("hostPath") or {}).get("path", "/"))
    return path if path.parent == root else None


class Provisioner:
    def __init__(self, kubeconfig: str, kubectl: str, node: str, root: Path) -> None:
        self.base = [kubectl, "--kubeconfig", kubeconfig]
        self.node = node
        self.root = root

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def items(self, *args: str) -> list[Obj]:
        items: list[Obj] = json.loads(self.kubectl("get", *args, "-o", "json"))["items"]
        return items

    def provision(self) -> None:
        for claim in self.items("pvc", "--all-namespaces"):
            if not wants_volume(claim, self.node):
                continue
            path = make_directory(self.root, claim)
            manifest = volume_for(claim, self.node, path)
            self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
            meta = claim["metadata"]
            print(
                f"provisioned {manifest['metadata']['name']} for {meta['namespace']}/{meta['name']}"
            )

    def reclaim(self) -> None:
        for volume in self.items("pv"):
            path = released_directory(volume, self.root)
            if path is None:  # not released, or another provisioner's (the node agent's)
                continue
            shutil.rmtree(path, ignore_errors=True)
            self.kubectl("delete", "pv", volume["metadata"]["name"], "--wait=false")
            print(f"deleted {volume['metadata']['name']}")

    def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.kubectl("apply", "-f", "-", stdin=json.dumps(storage_class()))
        while True:
            try:
                self.provision()
                self.reclaim()
            except (RuntimeError, json.JSONDecodeError) as error:
                print(f"retrying: {error}", file=sys.stderr)
            sys.stdout.flush()
            time.sleep(POLL_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubectl", default=os.environ.get("SIESTA_KUBECTL", "kubectl"))
    parser.add_argument("--node", required=True)
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args()
    Provisioner(args.kubeconfig, args.kubectl, args.node, args.root).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
