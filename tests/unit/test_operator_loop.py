"""ModelLoop.step against a Kube that records its calls and fails where told: what a failed
write leaves for the next step. A stand-in, not the API server: a real one cannot be made to
refuse exactly one status write while its watch still shows the replicas from before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from siesta.operator import render
from siesta.operator.demand import LeaseView
from siesta.operator.observe import child_view
from siesta.operator.plan import Views
from siesta.operator.reconcile import ModelLoop, Runtime
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BODY: dict[str, Any] = {
    "metadata": {"generation": 1},
    "spec": {"model": {"uri": "https://models.example.com/m.gguf"}},
}


class RecordingKube:
    """The calls execute() makes, in order; `patch_status` fails `status_failures` times."""

    def __init__(self, status_failures: int = 0) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.status_failures = status_failures

    async def create(self, desired: dict[str, Any], replicas: int = 0) -> None:
        self.calls.append(("create", desired["kind"]))

    async def update(self, desired: dict[str, Any], replicas: int = 0) -> None:
        self.calls.append(("update", desired["kind"]))

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(("scale", replicas))

    async def post_event(self, owner: Any, reason: str, *_: Any) -> None:
        self.calls.append(("event", reason))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append(("status", status["phase"]))
        if self.status_failures:
            self.status_failures -= 1
            raise ConnectionError("the API server went away")

    async def clear_manual_replicas(self, namespace: str, name: str) -> None:
        self.calls.append(("clear", None))


def test_after_a_failed_status_write_the_next_step_writes_only_the_status() -> None:
    kube = RecordingKube(status_failures=1)
    settings = OperatorSettings()
    runtime = Runtime(settings, kube)  # type: ignore[arg-type]
    runtime.now = lambda: NOW  # type: ignore[method-assign]
    loop = ModelLoop(runtime, "ai", "chat", "uid-1", {})
    owner = render.Owner(name="chat", namespace="ai", uid="uid-1")
    # The model's children exist at 0 replicas; a request is held.
    existing = [child_view(m) for m in render.children(owner, make_spec(), settings)]
    held = LeaseView("chat-demand-1", NOW - timedelta(seconds=1), 30, 1, 0)
    views = Views.build([], [held], existing)

    async def two_steps() -> None:
        try:
            await loop.step(BODY, views)
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failed status write was swallowed")
        first = list(kube.calls)
        kube.calls.clear()
        await loop.step(BODY, views)  # the watch has shown nothing new yet
        assert first == [("scale", 1), ("event", "ScaledUp"), ("status", "Loading")]
        # Neither the scale nor its event again: only the status that was not written.
        assert kube.calls == [("status", "Loading")]

    asyncio.run(two_steps())
