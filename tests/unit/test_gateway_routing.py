"""Choosing a replica: fewest in flight, round-robin ties, cooldown after a failure."""

from __future__ import annotations

from siesta.gateway.catalog import Endpoint
from siesta.gateway.routing import Router

A = Endpoint("a@10.0.0.1:8080", "10.0.0.1", 8080)
B = Endpoint("b@10.0.0.2:8080", "10.0.0.2", 8080)
C = Endpoint("c@10.0.0.3:8080", "10.0.0.3", 8080)


def test_no_endpoints_no_choice() -> None:
    assert Router().choose([], now=0.0) is None


def test_fewest_in_flight_wins() -> None:
    router = Router()
    router.started(A)
    router.started(A)
    router.started(B)
    assert router.choose([A, B, C], now=0.0) == C
    router.started(C)
    router.started(C)
    assert router.choose([A, B, C], now=0.0) == B


def test_ties_rotate() -> None:
    router = Router()
    picks = {router.choose([A, B], now=0.0) for _ in range(4)}
    assert picks == {A, B}


def test_finished_requests_count_down() -> None:
    router = Router()
    router.started(A)
    router.finished(A)
    assert router.in_flight(A) == 0
    router.finished(A)  # never negative
    assert router.in_flight(A) == 0


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
