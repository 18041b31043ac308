"""Generate charts/siesta/README.md from the `# --` comments in charts/siesta/values.yaml.

A `# --` comment (continued by following `#` lines) documents the key on the next line; its
default is that key's value in values.yaml. Keys without a comment are an error, so every
value stays documented.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml
from _generated import ROOT, run

CHART = ROOT / "charts" / "siesta"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")

INTRO = """\
# Siesta Helm chart

Siesta runs llama.cpp models (`ModelDeployment`, `siesta.dev/v1alpha1`) as StatefulSets on
GPU nodes and scales them to and from zero by schedule, load and demand. This chart installs
the operator (one replica, `Recreate`, kopf peering), the gateway (the OpenAI-compatible
endpoint that wakes sleeping models), their ServiceAccounts and RBAC, the ModelDeployment CRD,
and optionally a ServiceMonitor, a PodMonitor and a Grafana dashboard.

```sh
kubectl create namespace siesta-system
kubectl -n siesta-system create secret generic siesta-api-keys --from-file=api-keys=./keys.txt
helm install siesta charts/siesta --namespace siesta-system \\
  --set gateway.apiKeys.existingSecret=siesta-api-keys
```

The gateway is closed by default: without `gateway.apiKeys.existingSecret` the chart refuses
to install it, unless `gateway.auth=none` says that it should check no key.

## CRDs

- `ModelDeployment` is in `templates/crds/` behind `crds.install` (default true), so
  `helm upgrade` upgrades it. With `crds.keep` (default true) it carries
  `helm.sh/resource-policy: keep`: `helm uninstall` leaves the CRD and every ModelDeployment
  in place (delete them with `kubectl delete crd modeldeployments.siesta.dev`). With
  `crds.keep=false`, uninstalling deletes the CRD and with it every ModelDeployment (and so
  every model's StatefulSet, through owner references).
- kopf's peering CRDs (`clusterkopfpeerings.kopf.dev`, `kopfpeerings.kopf.dev`) are in the
  chart's `crds/` folder: shared by every kopf operator, installed when missing, never upgraded
  or deleted by Helm (`--skip-crds` skips them).

## Modes

- Cluster-wide (default, `watchNamespaces: []`): ClusterRoles, a `ClusterKopfPeering`.
- Namespaced (`watchNamespaces: [a, b]`): Roles and a `KopfPeering` in each listed
  namespace; the only cluster-wide grant is reading CustomResourceDefinitions.

Neither the operator nor the gateway may read Secrets. The gateway's API keys
(`gateway.apiKeys.existingSecret`) are mounted by the kubelet as a file.

## Security defaults

Both containers run as a non-root user (65532) with a read-only root file system, no
privilege escalation, all capabilities dropped and the RuntimeDefault seccomp profile; a
small `emptyDir` is mounted at `/tmp`.

`values.schema.json` rejects unknown keys and malformed values (for example a duration
that is not like `15m`) before anything reaches the cluster.

## Values

Generated from `values.yaml` by `scripts/chart_readme.py` (`make generate`).

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every `# --` comment, in file order."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending is not None:
            pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            found.append((".".join(key for _, key in stack), " ".join(pending)))
            pending = None
    return found


def lookup(values: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        values = values[part]
    return values


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}[
        type(value)
    ]


def outputs() -> dict[str, str]:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    keys = documented_keys(text)
    names = [key for key, _ in keys]
    undocumented = [
        leaf
        for leaf in leaves(values)
        if not any(leaf == key or leaf.startswith(key + ".") for key in names)
    ]
    if undocumented:
        raise SystemExit(f"values without a `# --` comment: {', '.join(undocumented)}")
    rows = []
    for key, description in keys:
        value = lookup(values, key)
        cell = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {type_name(value)} | `{json.dumps(value)}` | {cell} |")
    return {"charts/siesta/README.md": INTRO + "\n".join(rows) + "\n"}


if __name__ == "__main__":
    sys.exit(run(outputs, __doc__ or ""))
