"""Building ModelDeployment specs in tests from small dicts (camelCase, as users write them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from siesta.api.models import ModelDeploymentSpec


def make_spec(**sections: Any) -> ModelDeploymentSpec:
    """A valid spec: a model URI plus the given top-level sections."""
    document: dict[str, Any] = {"model": {"uri": "https://models.example.com/m.gguf"}, **sections}
    return ModelDeploymentSpec.model_validate(document)


def utc(text: str) -> datetime:
    """'2026-11-25T09:00' (UTC) or any ISO time with an offset -> aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


OFFICE_HOURS = {
    "timezone": "Europe/Berlin",
    "windows": [
        {"name": "office-hours", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "minReplicas": 1}
    ],
}


# Every spec.pod setting, once: the API server must keep them all and the operator pass them on.
POD_SETTINGS: dict[str, Any] = {
    "annotations": {"karpenter.sh/do-not-disrupt": "true"},
    "labels": {"cost-center": "reception"},
    "env": [
        {"name": "AWS_REGION", "value": "eu-central-1"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "proxy"}}],
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "models",
    "serviceAccountName": "siesta-models",
    "nodeSelector": {"karpenter.sh/capacity-type": "on-demand"},
    "volumes": [{"name": "keys", "secret": {"secretName": "server-keys"}}],
    "volumeMounts": [{"name": "keys", "mountPath": "/etc/siesta/keys", "readOnly": True}],
}
