"""The event loop: a trace replayed through `siesta.policy.decide` in simulated time.

The simulated operator calls the real `decide` whenever the real one would: when requests
start waiting at the gateway (demand), when a pod becomes ready, at the decision's own
`next_change`, and every metric interval while the model has replicas (the load query).
A metric tick whose inputs equal the previous decision's, with no load and before its
next_change, would give the same decision again and is skipped (a speed-up only).

The world around it (docs/cost-model.md):
- a scale-up creates pods at once (podManagementPolicy Parallel); each pod takes an empty
  node that still exists (the autoscaler has not removed it yet) or asks for a new one;
  one GPU pod per node;
- node ready -> pod loads the model -> ready; the gateway then forwards held requests in
  arrival order;
- requests go to ready replicas, at most `concurrency` at once each; the rest wait in one
  FIFO queue (an idealised least-loaded balancer);
- with no ready replica the gateway holds a request (up to the queue size) for wakeTimeout,
  then answers 503; without an activator (`schedule-only`) it is refused at once;
- a scale-down removes the highest ordinals; a pod with requests in flight drains first;
- an empty node is removed `node_unneeded_seconds` after it became empty, but not sooner
  than `scale_down_delay_after_add_seconds` after the last node was added.
- with a CPU bridge (sim/bridge.py), a request that finds no ready GPU replica goes to a
  ready bridge replica (on its own CPU node; up to its concurrency at once, the rest wait
  for a slot at the gateway) or is held until one of the two is ready; requests the bridge
  started finish there, those still waiting go to the GPU once it is ready. The operator's
  own `bridge_decision` says when the bridge runs, and its `gate_gpu` bends the GPU's
  decision (gpuAfter), called with the inputs the operator would give them.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from siesta.api.models import ModelDeploymentSpec
from siesta.policy import Decision, Memory, Observed, Signals, decide
from siesta.policy.bridge import BridgeMemory, bridge_decision, bridge_window, gate_gpu
from siesta.sim.bridge import ResolvedBridge, with_bridge
from siesta.sim.traces import Trace
from siesta.sim.world import ResolvedWorld


class Outcome(IntEnum):
    WAITING = 0
    SERVED = 1
    TIMED_OUT = 2
    REJECTED = 3


# Order of simultaneous events: state changes first, then the decision that sees them.
class Kind(IntEnum):
    NODE_READY = 0
    POD_READY = 1
    COMPLETE = 2
    ARRIVAL = 3
    HOLD_TIMEOUT = 4
    DECIDE = 5
    METRIC_TICK = 6
    NODE_REMOVAL = 7


@dataclass
class SimRequest:
    index: int
    arrival: datetime
    service: timedelta
    start: datetime | None = None
    """When a replica began serving it."""
    end: datetime | None = None
    """When it finished, timed out or was refused."""
    outcome: Outcome = Outcome.WAITING
    held: bool = False
    """Whether the gateway had to hold it for a replica to become ready (a cold start)."""
    at_zero: bool = False
    """Whether it arrived with no GPU replica ready (what a night caller meets)."""
    served_by: str = ""
    """"gpu" or "bridge" once a replica took it."""
    first_token_seconds: float = 0.0
    """The replica's own time to the first token (prompt processing), once taken."""

    @property
    def wait_seconds(self) -> float | None:
        if self.outcome == Outcome.SERVED and self.start is not None:
            return (self.start - self.arrival).total_seconds()
        if self.outcome == Outcome.TIMED_OUT and self.end is not None:
            return (self.end - self.arrival).total_seconds()
        return None

    @property
    def first_token_wait(self) -> float | None:
        """Arrival -> first token: the wait plus the serving replica's prompt time."""
        if self.outcome == Outcome.SERVED and self.start is not None:
            return (self.start - self.arrival).total_seconds() + self.first_token_seconds
        return self.wait_seconds


@dataclass
class Node:
    index: int
    requested: datetime
    ready_at: datetime
    ready: bool = False
    pod: Pod | None = None
    empty_since: datetime | None = None
    removed: datetime | None = None
    generation: int = 0
    bridge: bool = False
    """A CPU node of the bridge (priced and counted apart from the GPU nodes)."""


@dataclass
class Pod:
    ordinal: int
    created: datetime
    node: Node
    ready_at: datetime | None = None
    removed: datetime | None = None
    terminating: bool = False
    in_flight: int = 0

    @property
    def ready(self) -> bool:
        return self.ready_at is not None


@dataclass(frozen=True)
class DecisionRecord:
    """One call of decide, with exactly the inputs it got."""

    time: datetime
    observed: Observed
    signals: Signals
    previous: Memory
    decision: Decision
    trigger: str


@dataclass(frozen=True)
class ColdStart:
    """A period in which requests waited at the gateway for a replica to become ready."""

    start: datetime
    end: datetime | None
    requests: int


@dataclass
class SimResult:
    policy: str
    spec: ModelDeploymentSpec
    world: ResolvedWorld
    start: datetime
    end: datetime
    requests: list[SimRequest]
    nodes: list[Node]
    pods: list[Pod]
    decisions: list[DecisionRecord]
    cold_starts: list[ColdStart]
    replicas: list[tuple[datetime, int]] = field(default_factory=list)
    """(time, desired replicas) at every change."""
    bridge: ResolvedBridge | None = None
    bridge_nodes: list[Node] = field(default_factory=list)
    bridge_replicas: list[tuple[datetime, int]] = field(default_factory=list)
    """(time, bridge replicas) at every change."""

    def node_seconds(self) -> float:
        return self._seconds(self.nodes)

    def bridge_node_seconds(self) -> float:
        return self._seconds(self.bridge_nodes)

    def _seconds(self, nodes: list[Node]) -> float:
        total = 0.0
        for node in nodes:
            begin = max(node.requested, self.start)
            finish = min(node.removed or self.end, self.end)
            total += max((finish - begin).total_seconds(), 0.0)
        return total


@dataclass(order=True)
class _Event:
    time: datetime
    kind: Kind
    seq: int
    payload: Any = field(compare=False, default=None)


def default_span(trace: Trace, zone_name: str) -> tuple[datetime, datetime]:
    """The trace's span, else local midnight before the first request to midnight after the last."""
    if trace.start is not None and trace.end is not None:
        return trace.start, trace.end
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    first = trace.requests[0].arrival.astimezone(zone)
    last = trace.requests[-1].arrival.astimezone(zone)
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, end


class Simulation:
    """One policy (a spec plus whether a gateway holds requests) replayed over one trace."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        world: ResolvedWorld,
        trace: Trace,
        start: datetime,
        end: datetime,
        *,
        policy: str = "siesta",
        activator: bool = True,
        seed: int = 0,
        bridge: ResolvedBridge | None = None,
    ) -> None:
        if end <= start:
            raise ValueError("the simulated period must end after it starts")
        self.spec = with_bridge(spec, bridge) if bridge is not None else spec
        self.world = world
        # decide() labels instants in its reasons as UTC: give it UTC, as the operator does.
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        self.policy = policy
        self.activator = activator
        self.rng = random.Random(seed)
        self.requests = [
            SimRequest(
                i,
                r.arrival.astimezone(UTC),
                timedelta(seconds=self._service_seconds(r.duration_seconds, r.tokens)),
            )
            for i, r in enumerate(trace.requests)
        ]
        self.events: list[_Event] = []
        self.seq = 0
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []  # live pods, by ordinal
        self.all_pods: list[Pod] = []
        self.replicas = 0
        self.held: deque[SimRequest] = deque()
        self.queue: deque[SimRequest] = deque()
        self.last_request: datetime | None = None
        self.memory = Memory()
        self.last_record: DecisionRecord | None = None
        self.decisions: list[DecisionRecord] = []
        self.cold_starts: list[ColdStart] = []
        self.cold_start_begin: datetime | None = None
        self.cold_start_requests = 0
        self.timeline: list[tuple[datetime, int]] = []
        self.decide_at: set[datetime] = set()
        self.tick_scheduled = False
        self.last_node_added: datetime | None = None
        self.unresolved = 0
        # The CPU bridge: one replica at most, on its own nodes, with its own queue.
        self.bridge = bridge
        self.bridge_memory = BridgeMemory()
        self.bridge_nodes: list[Node] = []
        self.bridge_pod: Pod | None = None
        self.bridge_queue: deque[SimRequest] = deque()
        """Requests for the bridge waiting for one of its slots (at the gateway)."""
        self.bridge_timeline: list[tuple[datetime, int]] = []
        self.bridge_last_added: datetime | None = None

    # --- helpers -------------------------------------------------------------------------

    def _service_seconds(self, duration: float | None, tokens: int | None) -> float:
        if duration is not None:
            return duration
        if tokens is not None:
            return tokens / self.world.tokens_per_second
        return self.world.default_request_seconds

    def _bridge_service(self, request: SimRequest) -> timedelta:
        """The CPU generates slower: the GPU's service time scaled by the speed ratio."""
        assert self.bridge is not None
        ratio = self.world.tokens_per_second / self.bridge.tokens_per_second
        return request.service * ratio

    def _push(self, time: datetime, kind: Kind, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, _Event(time, kind, self.seq, payload))

    def _serving(self) -> list[Pod]:
        return [pod for pod in self.pods if pod.ready and not pod.terminating]

    def observed(self) -> Observed:
        active = [pod for pod in self.pods if not pod.terminating]
        starting = [pod for pod in active if not pod.ready]
        return Observed(
            replicas=self.replicas,
            ready=len(active) - len(starting),
            starting=len(starting),
            waiting_for_gpu=sum(1 for pod in starting if not pod.node.ready),
            starting_since=min((pod.created for pod in starting), default=None),
        )

    def load(self) -> float:
        """What the default load query returns: requests processing + deferred on the servers."""
        return float(sum(pod.in_flight for pod in self.pods) + len(self.queue))

    def signals(self) -> Signals:
        return Signals(
            load=self.load(),
            pending_requests=len(self.held) if self.activator else 0,
            last_request_time=self.last_request if self.activator else None,
            bridge_in_flight=self._bridge_busy(),
        )

    # --- the bridge ----------------------------------------------------------------------

    def _bridge_serving(self) -> bool:
        return self.bridge_pod is not None and self.bridge_pod.ready

    def _bridge_busy(self) -> int:
        in_flight = self.bridge_pod.in_flight if self.bridge_pod is not None else 0
        return in_flight + len(self.bridge_queue)

    def _bridge_observed(self) -> Observed:
        pod = self.bridge_pod
        if pod is None:
            return Observed()
        return Observed(
            replicas=1,
            ready=1 if pod.ready else 0,
            starting=0 if pod.ready else 1,
            starting_since=None if pod.ready else pod.created,
        )

    def _gate(
        self, now: datetime, observed: Observed, signals: Signals, decision: Decision
    ) -> Decision:
        """The operator's bridge decision: the bridge's replicas, and the GPU's as it bends them."""
        bridge = bridge_decision(
            self.spec, observed, self._bridge_observed(), signals, now, self.bridge_memory
        )
        self.bridge_memory = bridge.memory
        if bridge.next_change is not None and bridge.next_change not in self.decide_at:
            self.decide_at.add(bridge.next_change)
            self._push(bridge.next_change, Kind.DECIDE)
        self._apply_bridge(now, bridge.desired)
        return gate_gpu(decision, bridge, observed)

    def _apply_bridge(self, now: datetime, desired: int) -> None:
        current = 0 if self.bridge_pod is None else 1
        if desired == current:
            return
        if desired > current:
            self.bridge_pod = self._create_pod(now, 0, bridge=True)
        else:
            pod = self.bridge_pod
            assert pod is not None
            self.bridge_pod = None
            pod.terminating = True
            if pod.in_flight == 0:
                self._remove_pod(now, pod)
            # Requests still waiting for its slots: the gateway holds them again.
            while self.bridge_queue:
                self._hold(now, self.bridge_queue.pop(), front=True)
        self.bridge_timeline.append((now, desired))

    def _dispatch_bridge(self, now: datetime) -> None:
        pod = self.bridge_pod
        if pod is None or not pod.ready or self.bridge is None:
            return
        while self.bridge_queue and pod.in_flight < self.bridge.concurrency:
            request = self.bridge_queue.popleft()
            request.start, request.served_by = now, "bridge"
            request.first_token_seconds = self.bridge.first_token_seconds
            pod.in_flight += 1
            self._push(now + self._bridge_service(request), Kind.COMPLETE, (request, pod))

    def _bridge_ready(self, now: datetime, pod: Pod) -> None:
        if pod.removed is not None:
            return
        pod.ready_at = now
        if pod is self.bridge_pod and not self._serving():
            # Held requests go to whichever replica is ready first: here, the bridge.
            while self.held:
                self.bridge_queue.append(self.held.popleft())
            self._end_cold_start(now)
            self._dispatch_bridge(now)
        self._decide(now, "bridge ready")

    # --- the decision --------------------------------------------------------------------

    def _decide(self, now: datetime, trigger: str, *, skippable: bool = False) -> None:
        observed, signals = self.observed(), self.signals()
        last = self.last_record
        if (
            skippable
            and self.bridge is None
            and last is not None
            and observed == last.observed
            and signals == last.signals
            and not signals.load
            and not signals.pending_requests
            and (last.decision.next_change is None or now < last.decision.next_change)
        ):
            return
        previous = self.memory
        decision = decide(self.spec, observed, signals, now, previous)
        if self.bridge is not None:
            decision = self._gate(now, observed, signals, decision)
        record = DecisionRecord(now, observed, signals, previous, decision, trigger)
        self.decisions.append(record)
        self.last_record = record
        self.memory = decision.memory
        self._apply(now, decision.desired)
        if decision.next_change is not None and decision.next_change not in self.decide_at:
            self.decide_at.add(decision.next_change)
            self._push(decision.next_change, Kind.DECIDE)
        if self.replicas > 0 and not self.tick_scheduled:
            self.tick_scheduled = True
            self._push(
                now + timedelta(seconds=self.world.metric_interval_seconds), Kind.METRIC_TICK
            )

    def _apply(self, now: datetime, desired: int) -> None:
        if desired == self.replicas:
            return
        if desired > self.replicas:
            taken = {pod.ordinal for pod in self.pods if not pod.terminating}
            ordinal = 0
            for _ in range(desired - self.replicas):
                while ordinal in taken:
                    ordinal += 1
                taken.add(ordinal)
                self._create_pod(now, ordinal)
        else:
            active = sorted((p for p in self.pods if not p.terminating), key=lambda p: -p.ordinal)
            for pod in active[: self.replicas - desired]:
                pod.terminating = True
                if pod.in_flight == 0:
                    self._remove_pod(now, pod)
            if not self._serving():
                # Nobody left to serve what was forwarded: the gateway holds it again.
                while self.queue:
                    self._hold(now, self.queue.pop(), front=True)
        self.replicas = desired
        self.timeline.append((now, desired))

    # --- pods and nodes ------------------------------------------------------------------

    def _load_seconds(self, node: Node) -> float:
        if node.bridge:
            assert self.bridge is not None
            return self.bridge.model_load_seconds
        return self.world.model_load_seconds

    def _last_added(self, node: Node) -> datetime | None:
        return self.bridge_last_added if node.bridge else self.last_node_added

    def _create_pod(self, now: datetime, ordinal: int, *, bridge: bool = False) -> Pod:
        nodes = self.bridge_nodes if bridge else self.nodes
        free = [n for n in nodes if n.pod is None and n.removed is None]
        free.sort(key=lambda n: (not n.ready, n.ready_at, n.index))
        if free:
            node = free[0]
        else:
            if bridge:
                assert self.bridge is not None
                delay = self.bridge.node_provision_seconds
            else:
                jitter = self.world.node_provision_jitter_seconds
                delay = self.world.node_provision_seconds + (
                    self.rng.uniform(0, jitter) if jitter else 0.0
                )
            node = Node(len(nodes), now, now + timedelta(seconds=delay), bridge=bridge)
            nodes.append(node)
            if bridge:
                self.bridge_last_added = now
            else:
                self.last_node_added = now
            self._push(node.ready_at, Kind.NODE_READY, node)
        pod = Pod(ordinal, now, node)
        node.pod, node.empty_since = pod, None
        node.generation += 1
        if not bridge:
            self.pods.append(pod)
            self.all_pods.append(pod)
        if node.ready:
            self._push(now + timedelta(seconds=self._load_seconds(node)), Kind.POD_READY, pod)
        return pod

    def _remove_pod(self, now: datetime, pod: Pod) -> None:
        pod.removed = now
        if pod in self.pods:
            self.pods.remove(pod)
        node = pod.node
        node.pod = None
        node.generation += 1
        if node.ready:
            node.empty_since = now
            self._schedule_node_removal(now, node)

    def _schedule_node_removal(self, now: datetime, node: Node) -> None:
        assert node.empty_since is not None
        when = node.empty_since + timedelta(seconds=self.world.node_unneeded_seconds)
        last_added = self._last_added(node)
        if last_added is not None:
            after_add = last_added + timedelta(
                seconds=self.world.scale_down_delay_after_add_seconds
            )
            when = max(when, after_add)
        self._push(max(when, now), Kind.NODE_REMOVAL, (node, node.generation))

    def _remove_node(self, now: datetime, node: Node) -> None:
        delay = timedelta(seconds=self.world.scale_down_delay_after_add_seconds)
        last_added = self._last_added(node)
        if last_added is not None and now < last_added + delay:
            self._push(last_added + delay, Kind.NODE_REMOVAL, (node, node.generation))
            return
        node.removed = now

    # --- requests ------------------------------------------------------------------------

    def _hold(self, now: datetime, request: SimRequest, *, front: bool = False) -> None:
        if not self.held:
            self.cold_start_begin = now
            self.cold_start_requests = 0
        request.held = True
        self.cold_start_requests += 1
        if front:
            self.held.appendleft(request)
        else:
            self.held.append(request)
        deadline = request.arrival + timedelta(seconds=self.world.wake_timeout_seconds)
        self._push(max(deadline, now), Kind.HOLD_TIMEOUT, request)

    def _end_cold_start(self, now: datetime) -> None:
        if self.cold_start_begin is not None and not self.held:
            self.cold_starts.append(ColdStart(self.cold_start_begin, now, self.cold_start_requests))
            self.cold_start_begin = None

    def _forward(self, now: datetime, request: SimRequest) -> None:
        self.queue.append(request)
        self._dispatch(now)

    def _dispatch(self, now: datetime) -> None:
        while self.queue:
            candidates = [p for p in self._serving() if p.in_flight < self.world.concurrency]
            if not candidates:
                return
            pod = min(candidates, key=lambda p: (p.in_flight, p.ordinal))
            request = self.queue.popleft()
            request.start, request.served_by = now, "gpu"
            request.first_token_seconds = self.world.first_token_seconds
            pod.in_flight += 1
            self._push(now + request.service, Kind.COMPLETE, (request, pod))

    def _finish(self, now: datetime, request: SimRequest, outcome: Outcome) -> None:
        request.end = now
        request.outcome = outcome
        self.unresolved -= 1

    # --- the loop ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Start as the spec would have left things: the replicas decide wants, already ready."""
        now = self.start
        first = decide(self.spec, Observed(), self.signals(), now, self.memory)
        self.decisions.append(
            DecisionRecord(now, Observed(), self.signals(), self.memory, first, "start")
        )
        self.memory = first.memory
        for ordinal in range(first.desired):
            node = Node(len(self.nodes), now, now, ready=True)
            pod = Pod(ordinal, now, node, ready_at=now)
            node.pod = pod
            self.nodes.append(node)
            self.pods.append(pod)
            self.all_pods.append(pod)
        self.replicas = first.desired
        self.timeline.append((now, first.desired))
        if self.bridge is not None and bridge_window(self.spec, now)[0] is not None:
            node = Node(0, now, now, ready=True, bridge=True)
            self.bridge_pod = Pod(0, now, node, ready_at=now)
            node.pod = self.bridge_pod
            self.bridge_nodes.append(node)
            self.bridge_timeline.append((now, 1))
        self._decide(now, "start")

    def run(self) -> SimResult:
        # Requests outside the simulated period are left out (and out of the report).
        self.requests = [r for r in self.requests if self.start <= r.arrival < self.end]
        for request in self.requests:
            self._push(request.arrival, Kind.ARRIVAL, request)
        self.unresolved = len(self.requests)
        self._settle()
        # After the end, run on only until every request has an outcome.
        hard_stop = (
            self.end + timedelta(seconds=self.world.wake_timeout_seconds) + timedelta(days=1)
        )
        while self.events:
            event = heapq.heappop(self.events)
            if event.time > self.end and (self.unresolved <= 0 or event.time > hard_stop):
                break
            self._handle(event)
        return SimResult(
            policy=self.policy,
            spec=self.spec,
            world=self.world,
            start=self.start,
            end=self.end,
            requests=self.requests,
            nodes=self.nodes,
            pods=self.all_pods,
            decisions=self.decisions,
            cold_starts=self.cold_starts,
            replicas=self.timeline,
            bridge=self.bridge,
            bridge_nodes=self.bridge_nodes,
            bridge_replicas=self.bridge_timeline,
        )

    def _handle(self, event: _Event) -> None:
        now = event.time
        if event.kind == Kind.ARRIVAL:
            assert isinstance(event.payload, SimRequest)
            self._arrive(now, event.payload)
        elif event.kind == Kind.COMPLETE:
            request, pod = event.payload
            self._finish(now, request, Outcome.SERVED)
            pod.in_flight -= 1
            if pod.terminating and pod.in_flight == 0 and pod.removed is None:
                self._remove_pod(now, pod)
            if pod.node.bridge:
                self._dispatch_bridge(now)
                self._decide(now, "bridge request done")
            else:
                self._dispatch(now)
        elif event.kind == Kind.NODE_READY:
            assert isinstance(event.payload, Node)
            node = event.payload
            node.ready = True
            if node.pod is not None:
                self._push(
                    now + timedelta(seconds=self._load_seconds(node)), Kind.POD_READY, node.pod
                )
            else:
                node.empty_since = now
                self._schedule_node_removal(now, node)
        elif event.kind == Kind.POD_READY:
            assert isinstance(event.payload, Pod)
            if event.payload.node.bridge:
                self._bridge_ready(now, event.payload)
            else:
                self._pod_ready(now, event.payload)
        elif event.kind == Kind.HOLD_TIMEOUT:
            assert isinstance(event.payload, SimRequest)
            request = event.payload
            if request.outcome == Outcome.WAITING and request in self.held:
                self.held.remove(request)
                self._finish(now, request, Outcome.TIMED_OUT)
                self._end_cold_start(now)
        elif event.kind == Kind.DECIDE:
            self.decide_at.discard(now)
            self._decide(now, "next_change")
        elif event.kind == Kind.METRIC_TICK:
            self.tick_scheduled = False
            if self.replicas > 0 or self.pods:
                self._decide(now, "metric", skippable=True)
                if not self.tick_scheduled and self.replicas > 0:
                    self.tick_scheduled = True
                    self._push(
                        now + timedelta(seconds=self.world.metric_interval_seconds),
                        Kind.METRIC_TICK,
                    )
        elif event.kind == Kind.NODE_REMOVAL:
            node, generation = event.payload
            if node.pod is None and node.removed is None and node.generation == generation:
                self._remove_node(now, node)

    def _arrive(self, now: datetime, request: SimRequest) -> None:
        self.last_request = now
        request.at_zero = not self._serving()
        if self._serving():
            self._forward(now, request)
        elif self._bridge_serving():
            self.bridge_queue.append(request)
            self._dispatch_bridge(now)
            self._decide(now, "demand on the bridge")
        elif not self.activator or len(self.held) >= self.world.gateway_queue_size:
            # No activator (schedule-only) or a full gateway queue: refused at once.
            self._finish(now, request, Outcome.REJECTED)
        else:
            first = not self.held
            self._hold(now, request)
            if first:
                self._decide(now, "demand")

    def _pod_ready(self, now: datetime, pod: Pod) -> None:
        if pod.removed is not None:
            return
        pod.ready_at = now
        if not pod.terminating:
            # Requests waiting for a bridge slot have not started: the GPU takes them first.
            while self.bridge_queue:
                self.queue.append(self.bridge_queue.popleft())
            while self.held:
                self.queue.append(self.held.popleft())
            self._end_cold_start(now)
            self._dispatch(now)
        self._decide(now, "pod ready")
