"""Local validation (siesta explain/preview/simulate) rejects what the API server rejects."""

from __future__ import annotations

from typing import Any

import pytest

from siesta.api.contract import API_VERSION
from siesta.api.durations import format_duration, parse_duration
from siesta.api.loader import InvalidManifest, parse_model_deployment


def document(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"uri": "https://x/m.gguf"}, **spec},
    }


WINDOW = {"name": "w", "start": "0 8 * * *", "duration": "1h"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": {"min": 3, "max": 1}}, "spec.replicas: replicas.min must be <= replicas.max"),
        (
            {"replicas": {"min": -1}},
            "spec.replicas.min: Input should be greater than or equal to 0",
        ),
        (
            {"schedule": {"windows": [{"name": "w", "start": "0 8 * * *"}]}},
            "exactly one of end or duration",
        ),
        (
            {"schedule": {"windows": [{**WINDOW, "end": "0 9 * * *"}]}},
            "exactly one of end or duration",
        ),
        (
            {"schedule": {"windows": [{**WINDOW, "start": "0 8 * *"}]}},
            "start must be a 5-field cron expression",
        ),
        (
            {"schedule": {"windows": [{**WINDOW, "duration": "ten minutes"}]}},
            "spec.schedule.windows.0.duration",
        ),
        (
            {"schedule": {"windows": [{**WINDOW, "name": "Office_Hours"}]}},
            "spec.schedule.windows.0.name",
        ),
        ({"schedule": {"windows": [WINDOW, WINDOW]}}, "window names must be unique (repeated: w)"),
        (
            {"schedule": {"windows": [{**WINDOW, "minReplicas": 5}]}},
            "minReplicas 5 is above replicas.max 1",
        ),
        ({"scaling": {"idleTimeout": "0s"}}, "idleTimeout must be a positive duration"),
        ({"scaling": {"metric": {"targetPerReplica": 0}}}, "spec.scaling.metric.targetPerReplica"),
        ({"model": {"uri": "ftp://x/m.gguf"}}, "uri must start with https://"),
        ({"model": {"uri": "https://x/m.gguf", "sha256": "abc"}}, "spec.model.sha256"),
        ({"gpu": {"count": -1}}, "spec.gpu.count"),
        ({"replica": {"max": 2}}, "spec.replica: Extra inputs are not permitted"),
        (
            {"adapters": [{"name": "a", "uri": "/a.gguf"}, {"name": "a", "uri": "/b.gguf"}]},
            "adapter names must be unique (repeated: a)",
        ),
        ({"adapters": [{"name": "Support_7B", "uri": "/a.gguf"}]}, "spec.adapters.0.name"),
        ({"adapters": [{"name": "a", "uri": "ftp://x/a.gguf"}]}, "uri must start with https://"),
        ({"adapters": [{"name": "a", "uri": "/a.gguf", "scale": 0}]}, "spec.adapters.0.scale"),
        ({"adapters": [{"name": "m", "uri": "/a.gguf"}]}, "adapter 'm' is named like the model"),
        (
            {"adapters": [{"name": f"a{i}", "uri": "/a.gguf"} for i in range(33)]},
            "spec.adapters: List should have at most 32 items",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidManifest) as raised:
        parse_model_deployment(document(**spec), "md.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("md.yaml: ")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_duration_round_trip() -> None:
    assert format_duration(parse_duration("1h30m")) == "1h30m"


@pytest.mark.parametrize("text", ["", "15", "-5m", "5 m", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
