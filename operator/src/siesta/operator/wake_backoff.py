"""A failing model stops waking: status.wakeBackoff, written by the operator, read by the gateway.

Each time a model's replicas fail (ModelServing=False while replicas exist) counts once; when
they stop (the model went to sleep), the next wake is allowed only after a backoff: 1 minute,
doubling per failure, at most 1 hour. Until then the gateway answers 503 `model_failing` at
once with the remaining time in Retry-After, instead of waking a GPU node for a model that
crashes. A spec change (a new generation), the annotation `siesta.dev/wake-retry` set to a
new value, or a replica that serves, forget the failures. Pure: times are arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from siesta.operator.observe import format_time

FIRST_BACKOFF = timedelta(minutes=1)
LONGEST_BACKOFF = timedelta(hours=1)


def backoff(failures: int) -> timedelta:
    """1 min after the first failure, doubling, capped at 1 h."""
    if failures < 1:
        return timedelta(0)
    return min(FIRST_BACKOFF * (1 << min(failures - 1, 16)), LONGEST_BACKOFF)


def next_wake_backoff(
    previous: Mapping[str, Any] | None,
    *,
    failing: bool,
    serving: bool,
    generation: int | None,
    retry_token: str,
    now: datetime,
) -> dict[str, Any] | None:
    """The new status.wakeBackoff (None: no backoff) from the previous one and what is seen
    now: `failing` (replicas exist and fail), `serving` (a replica is ready, none fails)."""
    record = dict(previous) if previous else None
    if record is not None and (
        record.get("observedGeneration") != generation
        or (record.get("retryToken") or "") != retry_token
    ):
        record = None  # a new spec or the reset annotation: start over
    if serving:
        return None
    if failing:
        if record is not None and record.get("failingSince"):
            return record  # the same failure goes on
        return {
            "failures": int(record["failures"]) + 1 if record else 1,
            "failingSince": format_time(now),
            "nextWakeAllowed": None,  # set when the failure ends (the model sleeps)
            "observedGeneration": generation,
            "retryToken": retry_token or None,
        }
    if record is None or not record.get("failingSince"):
        return record
    failures = int(record.get("failures") or 1)
    return record | {"failingSince": None, "nextWakeAllowed": format_time(now + backoff(failures))}
