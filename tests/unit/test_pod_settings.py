"""spec.pod: every setting reaches the StatefulSet; fields Siesta owns cannot be changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from siesta.api import models
from siesta.api.contract import MODEL_LABEL
from siesta.operator import render
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec

OWNER = render.Owner(name="reception-7b", namespace="ai", uid="0000-uid")
SETTINGS = OperatorSettings(
    server_image="example.com/siesta-server:test", drain_timeout=timedelta(seconds=45)
)

POD: dict[str, Any] = {
    "annotations": {"karpenter.sh/do-not-disrupt": "true", "team": "reception"},
    "labels": {"cost-center": "clinic-42"},
    "env": [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "AWS_REGION", "value": "eu-central-1"},
        {"name": "SIESTA_LOG_LEVEL", "value": "debug"},
    ],
    "envFrom": [
        {"configMapRef": {"name": "proxy"}},
        {"secretRef": {"name": "extra"}, "prefix": "X_"},
    ],
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "models",
    "serviceAccountName": "siesta-models",
    "nodeSelector": {"karpenter.sh/capacity-type": "on-demand"},
    "volumes": [
        {"name": "api-keys", "secret": {"secretName": "siesta-server-keys"}},
        {"name": "ca", "configMap": {"name": "corporate-ca"}},
    ],
    "volumeMounts": [
        {"name": "api-keys", "mountPath": "/etc/siesta/keys", "readOnly": True},
        {"name": "ca", "mountPath": "/etc/ssl/corporate", "subPath": "ca.pem"},
    ],
}


def statefulset(**sections: Any) -> dict[str, Any]:
    return render.statefulset(
        OWNER, make_spec(model={"uri": "s3://clinic-models/m.gguf"}, **sections), SETTINGS
    )


def test_every_pod_setting_reaches_the_statefulset() -> None:
    sts = statefulset(
        pod=POD, gpu={"nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"}}
    )
    template = sts["spec"]["template"]
    pod = template["spec"]
    server = pod["containers"][0]
    assert template["metadata"]["annotations"] == {
        "karpenter.sh/do-not-disrupt": "true",
        "team": "reception",
        render.SAFE_TO_EVICT: "true",
    }
    assert template["metadata"]["labels"]["cost-center"] == "clinic-42"
    assert template["metadata"]["labels"][MODEL_LABEL] == "reception-7b"
    env = {item["name"]: item for item in server["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["AWS_REGION"]["value"] == "eu-central-1"
    assert env["SIESTA_LOG_LEVEL"]["value"] == "debug"
    assert env["SIESTA_MODEL"]["value"] == "s3://clinic-models/m.gguf"
    assert server["envFrom"] == POD["envFrom"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["priorityClassName"] == "models"
    assert pod["serviceAccountName"] == "siesta-models"
    assert pod["nodeSelector"] == {
        "karpenter.sh/capacity-type": "on-demand",
        "node.kubernetes.io/instance-type": "g5.xlarge",
    }
    assert pod["volumes"][-2:] == POD["volumes"]
    assert server["volumeMounts"][-2:] == POD["volumeMounts"]
    # What Siesta owns is still there.
    assert {"name": render.CACHE_VOLUME, "mountPath": render.CACHE_DIR} in server["volumeMounts"]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "startupProbe" in server


def test_s3_and_hf_models_are_downloaded_into_the_cache_claim() -> None:
    for uri in ("s3://clinic-models/m.gguf", "hf://acme/repo/m.gguf@" + "a" * 40):
        sts = render.statefulset(OWNER, make_spec(model={"uri": uri}), SETTINGS)
        assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == [
            render.CACHE_VOLUME
        ]


def test_no_pod_settings_changes_nothing() -> None:
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    for absent in ("serviceAccountName", "priorityClassName", "imagePullSecrets", "nodeSelector"):
        assert absent not in pod
    assert "envFrom" not in pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    opted_in = statefulset(pod={"automountServiceAccountToken": True})
    assert opted_in["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_owned_names_match_what_render_sets() -> None:
    sts = statefulset()
    template = sts["spec"]["template"]
    server = template["spec"]["containers"][0]
    assert {item["name"] for item in server["env"]} <= set(models.OWNED_ENV)
    for key in template["metadata"]["labels"]:
        assert key in models.OWNED_LABELS or key.startswith(models.OWNED_KEY_PREFIX)
    assert set(template["metadata"]["annotations"]) <= set(models.OWNED_ANNOTATIONS)
    for kind in ("https://h/m.gguf", "pvc://claim/m.gguf", "/models-in-image/m.gguf"):
        rendered = render.statefulset(OWNER, make_spec(model={"uri": kind}), SETTINGS)
        pod = rendered["spec"]["template"]["spec"]
        names = {v["name"] for v in pod["volumes"]} | {
            t["metadata"]["name"] for t in rendered["spec"].get("volumeClaimTemplates", [])
        }
        assert names <= set(models.OWNED_VOLUMES)
        paths = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert paths <= set(models.OWNED_MOUNT_PATHS)


CONFLICTS: list[tuple[dict[str, Any], str]] = [
    ({"annotations": {render.SAFE_TO_EVICT: "false"}}, "pod.annotations"),
    ({"annotations": {"siesta.dev/config-hash": "x"}}, "pod.annotations"),
    ({"labels": {"app.kubernetes.io/name": "other"}}, "pod.labels"),
    ({"labels": {MODEL_LABEL: "other"}}, "pod.labels"),
    ({"env": [{"name": "SIESTA_MODEL", "value": "/other.gguf"}]}, "SIESTA_MODEL are set by Siesta"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "each name at most once"),
    ({"nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4"}}, "come from spec.gpu"),
    ({"volumes": [{"name": "model-cache", "emptyDir": {}}]}, "model-cache are Siesta's"),
    (
        {
            "volumes": [{"name": "x", "emptyDir": {}}],
            "volumeMounts": [{"name": "x", "mountPath": "/models"}],
        },
        "/models is inside Siesta's mounts",
    ),
    (
        {
            "volumes": [{"name": "x", "emptyDir": {}}],
            "volumeMounts": [{"name": "x", "mountPath": "/tmp/x"}],
        },
        "/tmp/x is inside Siesta's mounts",
    ),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/data"}]}, "'nope' is not a volume"),
    ({"serviceAccountName": "Not_A_Name"}, "serviceAccountName"),
]


@pytest.mark.parametrize(("pod", "message"), CONFLICTS)
def test_conflicts_with_what_siesta_owns_are_refused(pod: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_spec(pod=pod)


def test_gpu_limits_come_only_from_spec_gpu() -> None:
    with pytest.raises(ValidationError, match=r"nvidia\.com/gpu comes from spec\.gpu\.count"):
        make_spec(server={"resources": {"limits": {"nvidia.com/gpu": 2}}})


def test_node_selectors_must_agree() -> None:
    with pytest.raises(ValidationError, match="disagree on a label"):
        make_spec(pod={"nodeSelector": {"zone": "a"}}, gpu={"nodeSelector": {"zone": "b"}})
    make_spec(pod={"nodeSelector": {"zone": "a"}}, gpu={"nodeSelector": {"zone": "a"}})


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://Bad_Bucket/m.gguf", "an s3 uri is s3://BUCKET/KEY"),
        ("s3://bucket/", "an s3 uri is s3://BUCKET/KEY"),
        ("hf://acme/m.gguf", "an hf uri is hf://ORG/REPO/FILE.gguf"),
        ("hf://acme/repo/m.gguf@", "an hf uri is hf://ORG/REPO/FILE.gguf"),
        ("ftp://host/m.gguf", "uri must start with"),
    ],
)
def test_model_uri_forms(uri: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_spec(model={"uri": uri})


@pytest.mark.parametrize(
    "uri",
    ["s3://clinic-models/llama/7b.gguf", "hf://acme/repo/dir/q4.gguf@refs/pr/1", "hf://a/b/c.gguf"],
)
def test_valid_remote_uris(uri: str) -> None:
    assert make_spec(model={"uri": uri}).model.uri == uri
