"""Durations in world files: plain seconds (180, 2.5) or Go-style durations ("3m", "1m30s")."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from siesta.api.durations import parse_duration


def to_seconds(value: object) -> object:
    """Seconds from a number or a duration string; anything else is left for pydantic."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return parse_duration(value).total_seconds()
    return value


Seconds = Annotated[float, BeforeValidator(to_seconds), Field(ge=0)]
