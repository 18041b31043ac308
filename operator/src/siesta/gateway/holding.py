"""Bounded per-model queues of requests held while a model wakes up.

A held request keeps its place until it leaves (forwarded, timed out, client gone). When a
model gets a ready replica, `wake` resolves the waiters in arrival order, so the event loop
resumes them, and they forward, in that order. Caps: per model (the model's
spec.scaling.maxHeldRequests, else the gateway's default), in all, and the bytes of the held
bodies in all (a count alone would let 4 MiB bodies exhaust the pod's memory).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from siesta.api.contract import ModelKey


class QueueFull(Exception):
    """No room: `scope` is "model" (this model's queue), "gateway" (the global cap) or
    "bytes" (the held bodies' budget)."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope} queue full ({limit} held)")
        self.scope = scope
        self.limit = limit


@dataclass(eq=False)
class Ticket:
    model: ModelKey
    number: int
    size: int = 0  # bytes of the held body
    _signal: asyncio.Event = field(default_factory=asyncio.Event)


class HoldQueues:
    def __init__(self, per_model: int, total: int, total_bytes: int | None = None) -> None:
        self.per_model = per_model
        self.total_limit = total
        self.bytes_limit = total_bytes
        self._queues: dict[ModelKey, OrderedDict[int, Ticket]] = {}
        self._numbers = itertools.count()
        self._total = 0
        self.held_bytes = 0

    def admit(self, model: ModelKey, size: int = 0, per_model: int | None = None) -> Ticket:
        """A place in `model`'s queue for a body of `size` bytes; `per_model` overrides the
        default cap for this model."""
        queue = self._queues.get(model) or OrderedDict()
        limit = self.per_model if per_model is None else per_model
        if len(queue) >= limit:
            raise QueueFull("model", limit)
        if self._total >= self.total_limit:
            raise QueueFull("gateway", self.total_limit)
        if self.bytes_limit is not None and self.held_bytes + size > self.bytes_limit:
            raise QueueFull("bytes", self.bytes_limit)
        ticket = Ticket(model, next(self._numbers), size)
        self._put(ticket)
        return ticket

    def _put(self, ticket: Ticket) -> None:
        self._queues.setdefault(ticket.model, OrderedDict())[ticket.number] = ticket
        self._total += 1
        self.held_bytes += ticket.size

    def leave(self, ticket: Ticket) -> None:
        """Remove a ticket (idempotent)."""
        queue = self._queues.get(ticket.model)
        if queue is not None and queue.pop(ticket.number, None) is not None:
            self._total -= 1
            self.held_bytes -= ticket.size
            if not queue:
                del self._queues[ticket.model]

    def readmit(self, ticket: Ticket) -> None:
        """Put back a ticket that stepped out (a try that reached no replica), in its place:
        arrival order. It was admitted once, so the caps do not turn it away."""
        if ticket.number in self._queues.get(ticket.model, ()):
            return
        self._put(ticket)
        queue = self._queues[ticket.model]
        for number in sorted(n for n in queue if n > ticket.number):
            queue.move_to_end(number)

    def wake(self, model: ModelKey) -> None:
        """Wake every waiter of `model`, oldest first."""
        for ticket in self._queues.get(model, {}).values():
            ticket._signal.set()

    def wake_all(self) -> None:
        for model in list(self._queues):
            self.wake(model)

    async def wait(self, ticket: Ticket, seconds: float) -> bool:
        """Wait until woken or `seconds` pass; True if woken."""
        try:
            await asyncio.wait_for(ticket._signal.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            return False
        finally:
            ticket._signal.clear()
        return True

    def pending(self, model: ModelKey) -> int:
        return len(self._queues.get(model, ()))
