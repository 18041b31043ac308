"""Choosing a replica: fewest in flight, round-robin ties, cooldown after a failure."""

from __future__ import annotations

from contextlib import ExitStack

from siesta.api.contract import ModelKey
from siesta.gateway.catalog import Endpoint
from siesta.gateway.inflight import InFlight
from siesta.gateway.routing import Router

A = Endpoint("a@10.0.0.1:8080", "10.0.0.1", 8080)
B = Endpoint("b@10.0.0.2:8080", "10.0.0.2", 8080)
C = Endpoint("c@10.0.0.3:8080", "10.0.0.3", 8080)


def test_no_endpoints_no_choice() -> None:
    assert Router().choose([], now=0.0) is None


MODEL = ModelKey("team", "m")


def test_fewest_in_flight_wins() -> None:
    in_flight = InFlight()
    router = Router(in_flight)
    with ExitStack() as forwards:
        for endpoint in (A, A, B):
            forwards.enter_context(in_flight.counting(MODEL, "m", endpoint.key))
        assert router.choose([A, B, C], now=0.0) == C
        for endpoint in (C, C):
            forwards.enter_context(in_flight.counting(MODEL, "m", endpoint.key))
        assert router.choose([A, B, C], now=0.0) == B


def test_ties_rotate() -> None:
    router = Router()
    picks = {router.choose([A, B], now=0.0) for _ in range(4)}
    assert picks == {A, B}


def test_one_count_read_per_replica_model_and_alias() -> None:
    in_flight = InFlight()
    changes: list[tuple[ModelKey, str]] = []
    in_flight.on_change = lambda model, alias: changes.append((model, alias))
    other = ModelKey("staging", "m")  # the same alias in another namespace
    with in_flight.counting(MODEL, "m", A.key), in_flight.counting(other, "m", B.key):
        with in_flight.counting(MODEL, "m", B.key):
            assert in_flight.for_endpoint(B.key) == 2
            assert in_flight.for_model(MODEL) == 2
            assert in_flight.for_alias("m") == 3
        assert in_flight.for_model(MODEL) == 1
    assert (
        in_flight.for_model(MODEL),
        in_flight.for_alias("m"),
        in_flight.for_endpoint(A.key),
    ) == (0, 0, 0)
    assert len(changes) == 6  # each start and each finish


def test_a_failed_forward_still_counts_down() -> None:
    in_flight = InFlight()
    try:
        with in_flight.counting(MODEL, "m", A.key):
            raise ConnectionError("replica went away")
    except ConnectionError:
        pass
    assert in_flight.for_endpoint(A.key) == 0


def test_cooling_endpoint_is_skipped_until_its_cooldown_ends() -> None:
    router = Router(cooldown=2.0)
    router.cool(A, now=10.0)
    assert router.choose([A], now=11.0) is None
    assert router.next_cooldown_end([A, B], now=11.0) == 12.0
    assert router.choose([A, B], now=11.0) == B
    assert router.choose([A], now=12.0) == A
    assert router.next_cooldown_end([A], now=12.0) is None


def test_exclude() -> None:
    assert Router().choose([A, B], now=0.0, exclude={A.key}) == B


def test_forget_drops_cooldowns_that_ended() -> None:
    router = Router(cooldown=2.0)
    router.cool(A, now=10.0)
    router.forget(now=12.0)
    assert router.next_cooldown_end([A], now=0.0) is None
