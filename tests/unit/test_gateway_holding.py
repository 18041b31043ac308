"""Held requests: bounded per model and in all, woken in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from siesta.api.contract import ModelKey
from siesta.gateway.holding import HoldQueues, QueueFull, Ticket


def test_per_model_cap() -> None:
    queues = HoldQueues(per_model=2, total=10)
    queues.admit(ModelKey("ns", "a"))
    queues.admit(ModelKey("ns", "a"))
    with pytest.raises(QueueFull) as full:
        queues.admit(ModelKey("ns", "a"))
    assert full.value.scope == "model"
    queues.admit(ModelKey("ns", "b"))  # other models are not affected
    assert queues.pending(ModelKey("ns", "a")) == 2
    assert queues.pending(ModelKey("ns", "b")) == 1


def test_global_cap() -> None:
    queues = HoldQueues(per_model=5, total=3)
    for model in (ModelKey("ns", "a"), ModelKey("ns", "b"), ModelKey("ns", "c")):
        queues.admit(model)
    with pytest.raises(QueueFull) as full:
        queues.admit(ModelKey("ns", "d"))
    assert full.value.scope == "gateway"


def test_leave_frees_room_and_is_idempotent() -> None:
    queues = HoldQueues(per_model=1, total=1)
    ticket = queues.admit(ModelKey("ns", "a"))
    queues.leave(ticket)
    queues.leave(ticket)
    assert queues.pending(ModelKey("ns", "a")) == 0
    queues.admit(ModelKey("ns", "b"))  # the global cap of 1 has room again


async def test_a_readmitted_ticket_keeps_its_place_in_arrival_order() -> None:
    queues = HoldQueues(per_model=3, total=3)
    first, second, third = (queues.admit(ModelKey("ns", "a")) for _ in range(3))
    queues.leave(first)  # tried a replica that refused the connection
    queues.admit(ModelKey("ns", "a"))  # its free slot is taken meanwhile
    queues.readmit(first)
    order: list[int] = []

    async def wait(ticket: Ticket) -> None:
        await queues.wait(ticket, 5.0)
        order.append(ticket.number)

    tasks = [asyncio.create_task(wait(t)) for t in (third, second, first)]
    for _ in range(3):  # zero-time yields until every task waits on its ticket (no clock)
        await asyncio.sleep(0)
    queues.wake(ModelKey("ns", "a"))
    await asyncio.gather(*tasks)
    assert order == [first.number, second.number, third.number]


async def test_wake_resumes_waiters_in_arrival_order() -> None:
    queues = HoldQueues(per_model=10, total=10)
    order: list[int] = []

    async def wait(index: int) -> None:
        ticket = queues.admit(ModelKey("ns", "a"))
        assert await queues.wait(ticket, 5.0)
        order.append(index)
        queues.leave(ticket)

    tasks = [asyncio.create_task(wait(i)) for i in range(5)]
    await asyncio.sleep(0)
    queues.wake(ModelKey("ns", "a"))
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_wait_times_out_without_wake() -> None:
    queues = HoldQueues(per_model=1, total=1)
    ticket = queues.admit(ModelKey("ns", "a"))
    assert not await queues.wait(ticket, 0.01)


async def test_wake_before_wait_is_not_lost() -> None:
    queues = HoldQueues(per_model=1, total=1)
    ticket = queues.admit(ModelKey("ns", "a"))
    queues.wake_all()
    assert await queues.wait(ticket, 0.01)


def test_held_bytes_have_a_budget() -> None:
    queues = HoldQueues(per_model=10, total=10, total_bytes=100)
    first = queues.admit(ModelKey("ns", "a"), size=60)
    with pytest.raises(QueueFull) as full:
        queues.admit(ModelKey("ns", "b"), size=41)
    assert full.value.scope == "bytes"
    queues.admit(ModelKey("ns", "b"), size=40)
    assert queues.held_bytes == 100
    queues.leave(first)
    assert queues.held_bytes == 40
    queues.readmit(first)  # a request back from a replica that was not reached
    assert queues.held_bytes == 100


def test_a_model_cap_overrides_the_default() -> None:
    queues = HoldQueues(per_model=1, total=10)
    for _ in range(3):
        queues.admit(ModelKey("ns", "big"), per_model=3)
    with pytest.raises(QueueFull) as full:
        queues.admit(ModelKey("ns", "big"), per_model=3)
    assert (full.value.scope, full.value.limit) == ("model", 3)


class ClientGone(Exception):
    pass


def test_a_place_is_given_back_once_whatever_ends_the_block() -> None:
    queues = HoldQueues(per_model=1, total=10)
    model = ModelKey("ns", "a")
    changes: list[str | None] = []
    seen: dict[str, object] = {}

    async def held_then_gone() -> None:
        async with queues.place(model, lambda place, outcome: changes.append(outcome)) as place:
            seen["empty before it waits"] = (place.held, queues.pending(model))
            place.take(size=10, per_model=None, now=asyncio.get_running_loop().time())
            seen["while held"] = (queues.pending(model), queues.held_bytes)
            raise ClientGone

    with pytest.raises(ClientGone):
        asyncio.run(held_then_gone())
    assert seen == {"empty before it waits": (False, 0), "while held": (1, 10)}
    assert (queues.pending(model), queues.held_bytes) == (0, 0)
    assert changes == [None, "abandoned"]


def test_a_place_steps_out_while_tried_and_leaves_with_its_outcome() -> None:
    async def scenario() -> tuple[list[int], float | None]:
        queues = HoldQueues(per_model=5, total=10)
        model = ModelKey("ns", "a")
        pending: list[int] = []
        async with queues.place(model, lambda place, outcome: outcomes.append(outcome)) as first:
            first.take(0, None, now=0.0)
            queues.admit(model)  # a second request
            first.step_out()  # tried: not waiting
            pending.append(queues.pending(model))
            first.step_back()  # the try reached no replica: back in, with its old place
            pending.append(queues.pending(model))
            first.leave("forwarded", at=2.5)
            pending.append(queues.pending(model))
        return pending, first.waited

    outcomes: list[str | None] = []
    assert asyncio.run(scenario()) == ([1, 2, 1], 2.5)
    assert outcomes == [None, None, None, "forwarded"]  # the block's end adds nothing
