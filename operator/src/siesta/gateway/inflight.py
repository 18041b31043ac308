"""The one count of requests forwarded to a replica and not finished.

Routing (per replica), the demand Lease (per model and role: the model's own GPU replicas,
or its CPU bridge) and the metric (per alias and role) all read this count, so they cannot
drift apart; `counting` is the only writer, and it takes the request back off in a
`finally`, whatever way the forward ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import NamedTuple

from siesta.api.contract import ModelKey


class Role(StrEnum):
    """Who serves a request (the values are SERVED_BY_HEADER's and the metrics' label)."""

    GPU = "gpu"  # the model's own replicas
    BRIDGE = "bridge"  # its CPU bridge


class Slot(NamedTuple):
    model: ModelKey
    alias: str
    endpoint: str  # Endpoint.key
    role: Role


class InFlight:
    def __init__(self) -> None:
        self._slots: Counter[Slot] = Counter()  # few entries: one per model and replica
        self.on_change: Callable[[ModelKey, str], None] = lambda model, alias: None

    @contextmanager
    def counting(
        self, model: ModelKey, alias: str, endpoint: str, role: Role = Role.GPU
    ) -> Iterator[None]:
        slot = Slot(model, alias, endpoint, role)
        self._slots[slot] += 1
        self.on_change(model, alias)
        try:
            yield
        finally:
            self._slots[slot] -= 1
            if not self._slots[slot]:
                del self._slots[slot]
            self.on_change(model, alias)

    def for_model(self, model: ModelKey, role: Role | None = None) -> int:
        """In flight for `model` (on replicas of `role`; None: all)."""
        return sum(
            n
            for slot, n in self._slots.items()
            if slot.model == model and role in (None, slot.role)
        )

    def for_alias(self, alias: str, role: Role | None = None) -> int:
        return sum(
            n
            for slot, n in self._slots.items()
            if slot.alias == alias and role in (None, slot.role)
        )

    def for_endpoint(self, endpoint: str) -> int:
        return sum(n for slot, n in self._slots.items() if slot.endpoint == endpoint)
