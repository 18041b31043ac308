"""The ModelDeployment API: pydantic models, durations and CRD generation."""

from siesta.api.contract import GROUP, KIND, PLURAL, VERSION, ModelKey
from siesta.api.durations import format_duration, parse_duration
from siesta.api.models import (
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelKey",
    "Phase",
    "format_duration",
    "parse_duration",
]
