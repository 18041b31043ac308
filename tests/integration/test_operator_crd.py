"""Invalid ModelDeployments are rejected by the real API server with a clear message.

The CRD (crds/, generated from siesta.api.models) carries OpenAPI constraints and CEL
rules; what they cannot check (time zone names) the operator reports as a condition
(test_operator_reconcile.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localworld.cluster import Cluster
from localworld.operator_env import OperatorAccess
from siesta.api.contract import API_VERSION, MODEL_LABEL
from support.specs import POD_SETTINGS

pytestmark = pytest.mark.cluster

WINDOW = {"name": "office", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5"}


def md(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def with_model(**sections: Any) -> dict[str, Any]:
    return {"model": {"uri": "https://models.example.com/m.gguf"}, **sections}


BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "min-above-max",
        with_model(replicas={"min": 3, "max": 2}),
        "replicas.min must be <= replicas.max",
    ),
    (
        "negative-min",
        with_model(replicas={"min": -1, "max": 2}),
        "should be greater than or equal to 0",
    ),
    (
        "end-and-duration",
        with_model(schedule={"windows": [{**WINDOW, "duration": "10h"}]}),
        "a window needs exactly one of end or duration",
    ),
    (
        "no-end",
        with_model(schedule={"windows": [{"name": "office", "start": "0 8 * * 1-5"}]}),
        "a window needs exactly one of end or duration",
    ),
    (
        "four-field-cron",
        with_model(schedule={"windows": [{**WINDOW, "start": "0 8 * *"}]}),
        "start must be a 5-field cron expression such as '0 8 * * 1-5'",
    ),
    ("bad-duration", with_model(scaling={"idleTimeout": "15 minutes"}), "spec.scaling.idleTimeout"),
    (
        "zero-idle-timeout",
        with_model(scaling={"idleTimeout": "0s"}),
        "idleTimeout must be auto or a positive duration such as 30s, 15m or 1h",
    ),
    (
        "zero-target",
        with_model(scaling={"metric": {"targetPerReplica": 0}}),
        "spec.scaling.metric.targetPerReplica",
    ),
    (
        "window-name-not-dns",
        with_model(schedule={"windows": [{**WINDOW, "name": "Office Hours"}]}),
        "spec.schedule.windows[0].name",
    ),
    (
        "ftp-uri",
        {"model": {"uri": "ftp://models.example.com/m.gguf"}},
        "uri must start with https://, http://, s3://, hf://, file://, pvc:// or /",
    ),
    (
        "s3-prefix",
        {"model": {"uri": "s3://clinic-models/llama/"}},
        "an s3 uri is s3://BUCKET/KEY",
    ),
    ("hf-no-file", {"model": {"uri": "hf://acme/repo"}}, "an hf uri is hf://ORG/REPO/FILE.gguf"),
    (
        "pod-safe-to-evict",
        with_model(
            pod={"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}
        ),
        "pod.annotations: siesta.dev/* and cluster-autoscaler.kubernetes.io/safe-to-evict are set by Siesta",
    ),
    (
        "pod-selector-label",
        with_model(pod={"labels": {MODEL_LABEL: "other"}}),
        "pod.labels: siesta.dev/*",
    ),
    (
        "pod-owned-env",
        with_model(pod={"env": [{"name": "SIESTA_MODEL", "value": "/x.gguf"}]}),
        "are set by Siesta from the spec",
    ),
    (
        "pod-gpu-node-label",
        with_model(pod={"nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4"}}),
        "come from spec.gpu",
    ),
    (
        "pod-cache-volume",
        with_model(pod={"volumes": [{"name": "model-cache", "emptyDir": {}}]}),
        "pod.volumes: the names tmp, model-cache, model-source are Siesta's",
    ),
    (
        "pod-cache-mount",
        with_model(
            pod={
                "volumes": [{"name": "extra", "emptyDir": {}}],
                "volumeMounts": [{"name": "extra", "mountPath": "/models/x"}],
            }
        ),
        "pod.volumeMounts: /tmp, /models, /model-source are Siesta's mounts",
    ),
    (
        "pod-mount-unknown-volume",
        with_model(pod={"volumeMounts": [{"name": "nope", "mountPath": "/data"}]}),
        "every mount names a volume of pod.volumes",
    ),
    (
        "pod-node-selector-disagrees",
        with_model(pod={"nodeSelector": {"zone": "a"}}, gpu={"nodeSelector": {"zone": "b"}}),
        "pod.nodeSelector and gpu.nodeSelector disagree on a label",
    ),
    (
        "gpu-in-resources",
        with_model(server={"resources": {"limits": {"nvidia.com/gpu": 2}}}),
        "nvidia.com/gpu comes from spec.gpu.count, not server.resources",
    ),
    (
        "holiday-bad-date",
        with_model(schedule={"windows": [WINDOW], "holidays": {"dates": ["2026-13-01"]}}),
        "spec.schedule.holidays.dates[0]",
    ),
    (
        "holiday-country-lowercase",
        with_model(schedule={"windows": [WINDOW], "holidays": {"country": "de"}}),
        "spec.schedule.holidays.country",
    ),
    (
        "holiday-subdivision-alone",
        with_model(schedule={"windows": [WINDOW], "holidays": {"subdivision": "BE"}}),
        "holidays.subdivision needs holidays.country",
    ),
    ("too-many-gpus", with_model(gpu={"count": 17}), "should be less than or equal to 16"),
    (
        "duplicate-windows",
        with_model(schedule={"windows": [WINDOW, WINDOW]}),
        "window names must be unique",
    ),
    (
        "window-above-max",
        with_model(replicas={"max": 1}, schedule={"windows": [{**WINDOW, "minReplicas": 2}]}),
        "a window's minReplicas must be <= replicas.max",
    ),
    ("no-model", {"replicas": {"max": 1}}, "spec.model: Required value"),
    ("bad-sha", with_model(model={"uri": "/m.gguf", "sha256": "abc"}), "spec.model.sha256"),
    (
        "duplicate-adapters",
        with_model(adapters=[{"name": "a", "uri": "/a.gguf"}, {"name": "a", "uri": "/b.gguf"}]),
        "adapter names must be unique",
    ),
    (
        "adapter-ftp-uri",
        with_model(adapters=[{"name": "a", "uri": "ftp://x/a.gguf"}]),
        "uri must start with https://",
    ),
    (
        "adapter-named-like-alias",
        {"model": {"uri": "/m.gguf", "alias": "base"}, "adapters": [{"name": "base", "uri": "/a"}]},
        "an adapter cannot be named like the model's alias",
    ),
    (
        "adapter-name-not-dns",
        with_model(adapters=[{"name": "Sales_7B", "uri": "/a.gguf"}]),
        "spec.adapters[0].name",
    ),
]


@pytest.mark.parametrize(("name", "spec", "message"), BAD, ids=[case[0] for case in BAD])
def test_invalid_spec_is_rejected(
    cluster: Cluster,
    operator_access: OperatorAccess,  # installs the CRD
    namespace: str,
    name: str,
    spec: dict[str, Any],
    message: str,
) -> None:
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=md(name, spec), check=False
    )
    assert result.returncode != 0, f"{name} was accepted"
    assert "is invalid" in result.stderr
    assert message in result.stderr, result.stderr


def test_a_valid_spec_is_accepted_with_defaults(
    cluster: Cluster, operator_access: OperatorAccess, namespace: str
) -> None:
    spec = with_model(schedule={"timezone": "Europe/Berlin", "prewarm": "10m", "windows": [WINDOW]})
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=md("good", spec))
    stored = cluster.get_json("modeldeployment", "good", "-n", namespace)["spec"]
    assert stored["replicas"] == {"min": 0, "max": 1}
    assert stored["scaling"]["scaleDownDelay"] == "5m"
    assert stored["gpu"]["count"] == 1
    assert stored["schedule"]["windows"][0]["minReplicas"] == 1


def test_pod_settings_and_remote_sources_are_accepted_as_written(
    cluster: Cluster, operator_access: OperatorAccess, namespace: str
) -> None:
    spec = {
        "model": {"uri": "s3://clinic-models/llama/7b.gguf"},
        "pod": POD_SETTINGS,
        "schedule": {
            "timezone": "Europe/Berlin",
            "windows": [WINDOW],
            "holidays": {"country": "DE", "subdivision": "BE", "dates": ["2026-12-24"]},
        },
    }
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=md("pod-settings", spec))
    stored = cluster.get_json("modeldeployment", "pod-settings", "-n", namespace)["spec"]
    assert stored["pod"] == POD_SETTINGS | {"automountServiceAccountToken": False}  # nothing pruned
    assert stored["schedule"]["holidays"]["subdivision"] == "BE"
    hf = {"model": {"uri": "hf://acme/clinic-7b/q4.gguf@" + "a" * 40}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=md("from-hf", hf))
