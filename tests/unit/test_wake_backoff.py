"""A failing model stops waking: the backoff the operator writes to status (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from siesta.operator.wake_backoff import backoff, next_wake_backoff

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def step(
    previous: dict[str, Any] | None,
    minutes: float,
    *,
    failing: bool = False,
    serving: bool = False,
    generation: int = 1,
    retry_token: str = "",
) -> dict[str, Any] | None:
    return next_wake_backoff(
        previous,
        failing=failing,
        serving=serving,
        generation=generation,
        retry_token=retry_token,
        now=T0 + timedelta(minutes=minutes),
    )


def test_backoff_doubles_from_a_minute_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 100)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 60, 60, 60)
    ]


def test_each_failure_counts_once_and_the_wait_starts_when_it_ends() -> None:
    record = step(None, 0, failing=True)
    assert record is not None
    assert (record["failures"], record["nextWakeAllowed"]) == (1, None)
    assert step(record, 5, failing=True) == record  # the same crash loop goes on
    asleep = step(record, 15)  # scaled to zero
    assert asleep is not None
    assert asleep["nextWakeAllowed"] == "2026-01-01T12:16:00Z"
    assert step(asleep, 17) == asleep  # woken again, starting: still counted
    again = step(step(asleep, 18, failing=True), 30)
    assert again is not None
    assert (again["failures"], again["nextWakeAllowed"]) == (2, "2026-01-01T12:32:00Z")


def test_a_serving_replica_a_new_spec_or_the_annotation_forget_the_failures() -> None:
    asleep = step(step(None, 0, failing=True), 10)
    assert step(asleep, 20, serving=True) is None
    assert step(asleep, 20, generation=2) is None
    assert step(asleep, 20, retry_token="now") is None
    fresh = step(asleep, 20, failing=True, generation=2)
    assert fresh is not None
    assert fresh["failures"] == 1
    assert step(None, 0) is None  # never failed: no field at all
