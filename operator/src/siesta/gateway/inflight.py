"""The one count of requests forwarded to a replica and not finished.

Routing (per replica), the demand Lease (per model) and the metric (per alias) all read
this count, so they cannot drift apart; `counting` is the only writer, and it takes the
request back off in a `finally`, whatever way the forward ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from siesta.api.contract import ModelKey


class Slot(NamedTuple):
    model: ModelKey
    alias: str
    endpoint: str  # Endpoint.key


class InFlight:
    def __init__(self) -> None:
        self._slots: Counter[Slot] = Counter()  # few entries: one per model and replica
        self.on_change: Callable[[ModelKey, str], None] = lambda model, alias: None

    @contextmanager
    def counting(self, model: ModelKey, alias: str, endpoint: str) -> Iterator[None]:
        slot = Slot(model, alias, endpoint)
        self._slots[slot] += 1
        self.on_change(model, alias)
        try:
            yield
        finally:
            self._slots[slot] -= 1
            if not self._slots[slot]:
                del self._slots[slot]
            self.on_change(model, alias)

    def for_model(self, model: ModelKey) -> int:
        return sum(n for slot, n in self._slots.items() if slot.model == model)

    def for_alias(self, alias: str) -> int:
        return sum(n for slot, n in self._slots.items() if slot.alias == alias)

    def for_endpoint(self, endpoint: str) -> int:
        return sum(n for slot, n in self._slots.items() if slot.endpoint == endpoint)
