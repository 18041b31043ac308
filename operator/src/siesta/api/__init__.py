"""The ModelDeployment API: pydantic models, durations and CRD generation."""

from siesta.api.durations import format_duration, parse_duration
from siesta.api.models import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
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
    "Phase",
    "format_duration",
    "parse_duration",
]
