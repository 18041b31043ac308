"""The gateway's side of the CPU bridge, pure: which replica a request gets, the bridge's
endpoints kept apart from the model's, its in-flight count, and what the Lease says."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from siesta.api.contract import (
    BRIDGE_IN_FLIGHT_ANNOTATION,
    BRIDGE_LABEL,
    IN_FLIGHT_ANNOTATION,
    MODEL_LABEL,
    PENDING_ANNOTATION,
    SERVED_BY_HEADER,
    ModelKey,
    bridge_name,
)
from siesta.gateway.catalog import Catalog, Endpoint, model_from_object
from siesta.gateway.demand import (
    CHANGE_INTERVAL,
    WARM_INTERVAL,
    Counts,
    DemandTracker,
    ModelDemand,
    Written,
    due_at,
    lease_patch,
    renew_time,
)
from siesta.gateway.inflight import InFlight, Role
from siesta.gateway.replies import as_comments
from siesta.gateway.routing import Pick, Router, passes_on_busy

GPU_A = Endpoint("gpu-a@10.0.0.1:8080", "10.0.0.1", 8080)
GPU_B = Endpoint("gpu-b@10.0.0.2:8080", "10.0.0.2", 8080)
BRIDGE = Endpoint("bridge-0@10.0.1.1:8080", "10.0.1.1", 8080)
MODEL = ModelKey("ai", "chat")


# --- which replica ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "bridge", "expected"),
    [
        ([GPU_A], [BRIDGE], Pick(GPU_A, Role.GPU)),  # the GPU is ready: the GPU
        ([], [BRIDGE], Pick(BRIDGE, Role.BRIDGE)),  # only the bridge: the bridge
        ([GPU_A], [], Pick(GPU_A, Role.GPU)),  # a model without a bridge
        ([], [], None),  # nothing ready: hold it
    ],
)
def test_a_gpu_replica_first_else_the_bridge_else_hold(
    gpu: list[Endpoint], bridge: list[Endpoint], expected: Pick | None
) -> None:
    assert Router().pick(gpu, bridge, now=0.0) == expected


def test_a_busy_bridge_never_draws_requests_away_from_a_ready_gpu() -> None:
    in_flight = InFlight()
    router = Router(in_flight)
    with ExitStack() as forwards:
        for _ in range(3):
            forwards.enter_context(in_flight.counting(MODEL, "chat", GPU_A.key))
        # The GPU has 3 in flight, the bridge none: fewest-in-flight is per kind, GPU first.
        assert router.pick([GPU_A], [BRIDGE], now=0.0) == Pick(GPU_A, Role.GPU)


def test_a_failing_bridge_leaves_the_request_waiting_for_the_gpu() -> None:
    router = Router(cooldown=2.0)
    router.cool(BRIDGE, now=10.0)  # it refused the connection
    assert router.pick([], [BRIDGE], now=11.0) is None
    assert router.next_cooldown_end([BRIDGE], now=11.0) == 12.0
    # The GPU replica becomes ready meanwhile: it gets the request at once.
    assert router.pick([GPU_A], [BRIDGE], now=11.0) == Pick(GPU_A, Role.GPU)


def test_gpu_replicas_that_all_cool_down_let_the_bridge_answer() -> None:
    router = Router(cooldown=2.0)
    router.cool(GPU_A, now=0.0)
    router.cool(GPU_B, now=0.0)
    assert router.pick([GPU_A, GPU_B], [BRIDGE], now=1.0) == Pick(BRIDGE, Role.BRIDGE)
    assert router.pick([GPU_A, GPU_B], [BRIDGE], now=2.0) in {
        Pick(GPU_A, Role.GPU),
        Pick(GPU_B, Role.GPU),
    }


@pytest.mark.parametrize(
    ("role", "another", "passed_on"),
    [
        (Role.GPU, None, True),  # the only replica is full: its 503 and Retry-After go out
        (Role.GPU, Pick(GPU_B, Role.GPU), False),  # another may have room
        (Role.GPU, Pick(BRIDGE, Role.BRIDGE), False),  # the bridge may answer meanwhile
        (Role.BRIDGE, None, False),  # a full bridge never answers: wait for the GPU
    ],
)
def test_a_busy_bridge_never_turns_a_request_away(
    role: Role, another: Pick | None, passed_on: bool
) -> None:
    assert passes_on_busy(role, another) is passed_on


def test_a_held_stream_learns_who_answered_from_comments() -> None:
    """Its headers went out with its first keep-alive; SSE comments, which clients skip,
    carry what they would have said."""
    text = as_comments(Role.BRIDGE, waited=12.5).decode()
    assert text == f": {SERVED_BY_HEADER}: bridge\n: X-Siesta-Wake-Seconds: 12.500\n\n"
    assert as_comments(Role.GPU, waited=None) == f": {SERVED_BY_HEADER}: gpu\n\n".encode()


# --- one in-flight count, per model and role ---------------------------------------------


def test_in_flight_is_counted_per_model_and_role() -> None:
    in_flight = InFlight()
    with (
        in_flight.counting(MODEL, "chat", BRIDGE.key, Role.BRIDGE),
        in_flight.counting(MODEL, "chat", BRIDGE.key, Role.BRIDGE),
        in_flight.counting(MODEL, "chat", GPU_A.key, Role.GPU),
    ):
        assert in_flight.for_model(MODEL, Role.BRIDGE) == 2
        assert in_flight.for_model(MODEL, Role.GPU) == 1
        assert in_flight.for_model(MODEL) == 3
        assert in_flight.for_alias("chat", Role.BRIDGE) == 2
        assert in_flight.for_endpoint(BRIDGE.key) == 2
    assert in_flight.for_model(MODEL, Role.BRIDGE) == 0


# --- the catalog --------------------------------------------------------------------------


def md(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ai", "uid": f"uid-{name}"},
        "spec": {"model": {"uri": "file:///m.gguf"}, **spec},
        "status": {"replicas": 0},
    }


def a_slice(name: str, service: str, address: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ai",
            "labels": {"kubernetes.io/service-name": service, **labels},
        },
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }


def bridge_slice(model: str, address: str, service: str | None = None) -> dict[str, Any]:
    service = bridge_name(model) if service is None else service
    return a_slice(f"{service}-x", service, address, {BRIDGE_LABEL: model})


def gpu_slice(model: str, address: str) -> dict[str, Any]:
    return a_slice(f"{model}-x", model, address, {MODEL_LABEL: model})


def test_a_model_knows_it_has_a_bridge_from_its_spec() -> None:
    assert model_from_object(md("chat", bridge={"threads": 4})).has_bridge
    assert model_from_object(md("chat", bridge={})).has_bridge  # every field defaulted
    assert model_from_object(md("chat")).has_bridge is False


def test_bridge_endpoints_are_the_models_but_kept_apart_from_its_own() -> None:
    changed: list[ModelKey] = []
    catalog = Catalog(on_endpoints=changed.append)
    catalog.replace_models([md("chat", bridge={"threads": 4})])
    catalog.apply_bridge_slice("ADDED", bridge_slice("chat", "10.0.1.1"))
    assert [e.address for e in catalog.bridge_endpoints(MODEL)] == ["10.0.1.1"]
    assert catalog.endpoints(MODEL) == []
    assert changed == [MODEL]  # held requests wake: the bridge is ready first
    catalog.apply_slice("ADDED", gpu_slice("chat", "10.0.0.1"))
    assert [e.address for e in catalog.endpoints(MODEL)] == ["10.0.0.1"]
    assert changed == [MODEL, MODEL]
    # Each watch relists its own kind: the other's endpoints stay.
    catalog.replace_slices([], "ai")
    assert len(catalog.bridge_endpoints(MODEL)) == 1
    catalog.replace_bridge_slices([], "ai")
    assert catalog.bridge_endpoints(MODEL) == []
    assert changed[-1] == MODEL


def test_a_slice_of_another_service_carrying_the_label_is_no_bridge() -> None:
    catalog = Catalog()
    catalog.apply_bridge_slice("ADDED", bridge_slice("chat", "10.0.9.9", service="impostor"))
    assert catalog.bridge_endpoints(MODEL) == []
    assert catalog.bridge_endpoints(ModelKey("ai", "impostor")) == []


# --- the demand Lease -----------------------------------------------------------------------


def test_the_lease_carries_the_bridge_count_only_for_a_model_with_a_bridge() -> None:
    plain = lease_patch("gw-0", Counts(pending=1, in_flight=2), 0.0)["metadata"]["annotations"]
    assert plain == {PENDING_ANNOTATION: "1", IN_FLIGHT_ANNOTATION: "2"}
    bridged = lease_patch("gw-0", Counts(0, 1, bridge_in_flight=3), 0.0)
    assert bridged["metadata"]["annotations"] == {
        PENDING_ANNOTATION: "0",
        IN_FLIGHT_ANNOTATION: "1",  # the GPU replicas' alone
        BRIDGE_IN_FLIGHT_ANNOTATION: "3",
    }


def test_once_the_lease_carried_a_bridge_count_it_keeps_writing_it() -> None:
    """A merge patch leaves out what it does not name: a stale 2 would keep the bridge up."""
    tracker = DemandTracker()
    tracker.set_counts(MODEL, 0, 0, 2)
    tracker.set_counts(MODEL, 0, 0, None)  # spec.bridge removed meanwhile
    assert tracker.models[MODEL].counts == Counts(0, 0, 0)


def test_a_bridge_count_change_is_written_within_the_change_interval() -> None:
    written = Written(Counts(0, 0, 1), at=100.0, seen=1000.0)
    demand = ModelDemand(Counts(0, 0, 0), last_seen=1000.0, written=written)
    assert due_at(demand, now=100.5) == 100.0 + CHANGE_INTERVAL
    unchanged = ModelDemand(Counts(0, 0, 1), last_seen=1000.0, written=written)
    # Unchanged, the stream on the bridge is still renewed (every warm interval).
    assert due_at(unchanged, now=100.5) == 100.0 + WARM_INTERVAL


def test_a_request_on_the_bridge_is_demand_until_it_ends() -> None:
    streaming = ModelDemand(Counts(0, 0, 1), last_seen=1000.0)
    assert renew_time(streaming, wall=1060.0) == 1060.0
    done = ModelDemand(Counts(0, 0, 0), last_seen=1000.0)
    assert renew_time(done, wall=1060.0) == 1000.0
