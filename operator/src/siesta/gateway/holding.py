"""Bounded per-model queues of requests held while a model wakes up.

A held request keeps its place until it leaves (forwarded, timed out, client gone). When a
model gets a ready replica, `wake` resolves the waiters in arrival order, so the event loop
resumes them, and they forward, in that order. Caps: per model (the model's
spec.scaling.maxHeldRequests, else the gateway's default), in all, and the bytes of the held
bodies in all (a count alone would let 4 MiB bodies exhaust the pod's memory).

A request's stay is one `async with queues.place(...)`: it takes a ticket when it first has
to wait, and whatever way the request ends, the ticket is given back once, on the way out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
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

    @asynccontextmanager
    async def place(self, model: ModelKey, on_change: OnChange) -> AsyncIterator[Place]:
        """One request's place in `model`'s queue, given back (as "abandoned", if it still
        holds one) when the block ends, by a return, an error or the client going away."""
        place = Place(self, model, on_change)
        try:
            yield place
        finally:
            place.leave("abandoned")


OnChange = Callable[["Place", "str | None"], None]
"""Called after every change to a place: with the outcome when it leaves the queue."""


class Place:
    """A request's place in its model's queue: empty until it first has to wait."""

    def __init__(self, queues: HoldQueues, model: ModelKey, on_change: OnChange) -> None:
        self._queues = queues
        self.model = model
        self._on_change = on_change
        self.ticket: Ticket | None = None
        self.since: float | None = None  # loop time when it started waiting
        self.waited: float | None = None  # seconds it waited, once it left

    @property
    def held(self) -> bool:
        return self.ticket is not None

    def take(self, size: int, per_model: int | None, now: float) -> None:
        """Start waiting, for a body of `size` bytes; raises QueueFull when there is no room."""
        self.ticket = self._queues.admit(self.model, size, per_model)
        self.since = now
        self._on_change(self, None)

    def step_out(self) -> None:
        """While it is tried it is not waiting: out of the queue, ticket kept."""
        if self.ticket is not None:
            self._queues.leave(self.ticket)
            self._on_change(self, None)

    def step_back(self) -> None:
        """A try that reached no replica: back into the queue at the place it had."""
        if self.ticket is not None:
            self._queues.readmit(self.ticket)
            self._on_change(self, None)

    @contextmanager
    def stepped_out(self) -> Iterator[None]:
        """One try at a replica: out of the queue meanwhile; back in its place afterwards,
        unless the try forwarded it (it left the queue then)."""
        self.step_out()
        try:
            yield
        finally:
            self.step_back()

    async def wait(self, seconds: float) -> bool:
        assert self.ticket is not None, "take a place before waiting"
        return await self._queues.wait(self.ticket, seconds)

    def leave(self, outcome: str, at: float | None = None) -> None:
        """Stop waiting (`at`: when, in loop time, if not now); only the first call counts."""
        if self.ticket is None:
            return
        self._queues.leave(self.ticket)
        self.ticket = None
        if self.since is not None:
            end = asyncio.get_running_loop().time() if at is None else at
            self.waited = end - self.since
        self._on_change(self, outcome)
