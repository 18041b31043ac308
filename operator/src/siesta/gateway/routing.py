"""Which replica gets a request: a GPU replica first, else the model's CPU bridge; among
replicas of one kind, the one with the fewest requests in flight.

Replicas that just refused a connection or answered "unavailable" cool down for a moment;
ties go round-robin so that equal replicas share the load. A bridge is only a stand-in:
it gets a request only while no GPU replica can take it, so requests that arrive after a
GPU replica is ready go to the GPU, and a failing bridge (cooling, or gone) just leaves
the request waiting for the GPU.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

from siesta.gateway.catalog import Endpoint
from siesta.gateway.inflight import InFlight, Role


class Pick(NamedTuple):
    """Where one try goes: a replica, and which kind of replica it is."""

    endpoint: Endpoint
    role: Role


COOLDOWN_SECONDS = 2.0


def passes_on_busy(role: Role, another: Pick | None) -> bool:
    """Whether a replica's "server busy" 503 goes to the client: only when no other replica
    can take the request and the busy one is a GPU replica (its Retry-After is honest). A busy
    bridge never answers for the model: the request waits for the GPU (or a free slot)."""
    return another is None and role is Role.GPU


class Router:
    def __init__(
        self, in_flight: InFlight | None = None, cooldown: float = COOLDOWN_SECONDS
    ) -> None:
        self.in_flight = InFlight() if in_flight is None else in_flight  # read, never written
        self.cooldown = cooldown
        self._cooling: dict[str, float] = {}  # endpoint key -> until (monotonic)
        self._turn = 0

    def choose(
        self, endpoints: Sequence[Endpoint], now: float, exclude: Collection[str] = ()
    ) -> Endpoint | None:
        candidates = [
            e for e in endpoints if e.key not in exclude and self._cooling.get(e.key, 0.0) <= now
        ]
        if not candidates:
            return None
        counts = {e.key: self.in_flight.for_endpoint(e.key) for e in candidates}
        fewest = min(counts.values())
        tied = [e for e in candidates if counts[e.key] == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]

    def pick(self, gpu: Sequence[Endpoint], bridge: Sequence[Endpoint], now: float) -> Pick | None:
        """A usable GPU replica, else a usable bridge replica, else None (hold it)."""
        for role, endpoints in ((Role.GPU, gpu), (Role.BRIDGE, bridge)):
            endpoint = self.choose(endpoints, now)
            if endpoint is not None:
                return Pick(endpoint, role)
        return None

    def next_cooldown_end(self, endpoints: Sequence[Endpoint], now: float) -> float | None:
        """When the first cooling endpoint of `endpoints` becomes usable again."""
        ends = [self._cooling[e.key] for e in endpoints if self._cooling.get(e.key, 0.0) > now]
        return min(ends) if ends else None

    def cool(self, endpoint: Endpoint, now: float) -> None:
        self._cooling[endpoint.key] = now + self.cooldown

    def forget(self, now: float) -> None:
        """Drop cooldowns that ended (keeps the map small)."""
        self._cooling = {k: until for k, until in self._cooling.items() if until > now}
