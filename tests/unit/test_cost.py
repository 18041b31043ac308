"""Measured GPU cost per model (siesta.operator.cost, cost_sample): pure, fixed times."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siesta.api.contract import MODEL_LABEL, ModelKey
from siesta.api.models import CostStatus
from siesta.operator import cost
from siesta.operator.cost_sample import node_facts, pod_facts, sample, wakes, window_test
from support.specs import OFFICE_HOURS, make_spec, utc

PRICES = cost.PriceTable(
    {
        "eu-central-1": {
            "on-demand": {"g4dn.xlarge": 0.5, "g4dn.12xlarge": 4.0},
            "spot": {"g4dn.xlarge": 0.2},
        },
        "us-east-1": {"on-demand": {"g4dn.xlarge": 1.0}},
    },
    default_region="us-east-1",
)
ME = ModelKey("ai", "reception")
OTHER = ModelKey("ai", "analyst")
BERLIN = "Europe/Berlin"
WEDNESDAY = utc("2026-11-25T10:00+01:00")
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("instance", "capacity", "region", "price"),
    [
        ("g4dn.xlarge", "on-demand", "eu-central-1", 0.5),
        ("g4dn.xlarge", "ON_DEMAND", "eu-central-1", 0.5),  # EKS managed node groups
        ("g4dn.xlarge", "spot", "eu-central-1", 0.2),
        ("g4dn.xlarge", "SPOT", "eu-central-1", 0.2),
        ("g4dn.xlarge", "", "", 1.0),  # unlabelled: the default region, on-demand
        ("g5.xlarge", "on-demand", "eu-central-1", None),  # not in the table: counted, not priced
        ("g4dn.xlarge", "on-demand", "ap-south-1", None),
    ],
)
def test_price_table(instance: str, capacity: str, region: str, price: float | None) -> None:
    assert PRICES.price(instance, capacity, region) == price


def node(name: str, instance: str = "g4dn.xlarge", capacity: str = "on-demand") -> cost.NodeFacts:
    return cost.NodeFacts(name, instance, capacity, "eu-central-1")


@pytest.mark.parametrize(
    ("name", "pods", "expected"),
    [
        ("alone on a node: the whole node", [cost.PodFacts("n1", 1, ME)], [("n1", 1.0, 0.5)]),
        (
            "two replicas on two nodes",
            [cost.PodFacts("n1", 1, ME), cost.PodFacts("n2", 1, ME)],
            [("n1", 1.0, 0.5), ("n2", 1.0, 0.5)],
        ),
        (
            "a 4-GPU node shared by GPUs requested",
            [
                cost.PodFacts("big", 1, ME),
                cost.PodFacts("big", 2, OTHER),
                cost.PodFacts("big", 1, None),
            ],
            [("big", 0.25, 4.0)],
        ),
        ("not on any node of its own", [cost.PodFacts("n1", 1, OTHER)], []),
    ],
)
def test_node_uses_split_shared_nodes(
    name: str, pods: list[cost.PodFacts], expected: list[tuple[str, float, float]]
) -> None:
    nodes = {"n1": node("n1"), "n2": node("n2"), "big": node("big", "g4dn.12xlarge")}
    uses = cost.node_uses(ME, pods, nodes, PRICES)
    assert [(u.node, u.share, u.price_per_hour) for u in uses] == expected, name


def test_an_hour_on_one_node_then_asleep() -> None:
    start = cost.begin(WEDNESDAY - timedelta(days=1), WEDNESDAY, BERLIN)
    on = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    state = cost.advance(start, WEDNESDAY, on, 1, 1, 0.5, BERLIN)
    for minute in range(1, 61):  # one sample a minute while it runs
        state = cost.advance(state, WEDNESDAY + minute * MINUTE, on, 1, 1, 0.5, BERLIN)
    state = cost.advance(state, WEDNESDAY + 61 * MINUTE, (), 0, 1, 0.5, BERLIN)  # asleep
    state = cost.advance(state, WEDNESDAY + 70 * MINUTE, (), 0, 1, 0.5, BERLIN)
    assert state.today.node_seconds == pytest.approx(61 * 60)  # counted until the next sample
    assert state.today.spend == pytest.approx(0.5 * 61 / 60)
    assert state.today.always_on == pytest.approx(0.5 * 70 / 60)
    assert state.today.saved == pytest.approx(0.5 * 9 / 60)
    for period in (state.week, state.total):  # all of it happened today
        assert (period.node_seconds, period.spend) == (state.today.node_seconds, state.today.spend)
    assert state.always_on_per_hour == 0.5


def test_a_new_day_and_week_start_from_zero() -> None:
    sunday_night = utc("2026-11-29T23:59+01:00")
    state = cost.begin(sunday_night - timedelta(days=10), sunday_night, BERLIN)
    on = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    state = cost.advance(state, sunday_night, on, 1, 1, 0.5, BERLIN)
    state = cost.advance(state, sunday_night + 2 * MINUTE, on, 1, 1, 0.5, BERLIN)  # Mon 00:01
    assert state.today.since == utc("2026-11-30T00:00+01:00")
    assert state.week.since == utc("2026-11-30T00:00+01:00")
    assert state.today.node_seconds == pytest.approx(60)  # only Monday's minute
    assert state.total.node_seconds == pytest.approx(120)


def test_a_long_gap_counts_only_up_to_max_gap() -> None:
    state = cost.begin(WEDNESDAY, WEDNESDAY, BERLIN)
    on = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    state = cost.advance(state, WEDNESDAY, on, 1, 1, 0.5, BERLIN)
    state = cost.advance(state, WEDNESDAY + timedelta(hours=1), on, 1, 1, 0.5, BERLIN)
    assert state.total.node_seconds == cost.MAX_GAP.total_seconds()
    assert state.unobserved_seconds == 3600 - cost.MAX_GAP.total_seconds()


def test_always_on_is_never_below_the_spend() -> None:
    two = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5), cost.NodeUse("n2", "g4dn.xlarge", 1.0, 0.5))
    state = cost.advance(
        cost.begin(WEDNESDAY, WEDNESDAY, BERLIN), WEDNESDAY, two, 2, 1, 0.5, BERLIN
    )
    state = cost.advance(state, WEDNESDAY + 10 * MINUTE, two, 2, 1, 0.5, BERLIN)
    assert state.total.spend == pytest.approx(2 * 0.5 / 6)
    assert state.total.always_on == pytest.approx(state.total.spend)  # load beyond one replica
    assert state.total.saved == pytest.approx(0.0)


def test_wakes_count_once_in_the_periods_they_began_in() -> None:
    state = cost.begin(WEDNESDAY - timedelta(days=3), WEDNESDAY, BERLIN)
    wake = cost.Wake(WEDNESDAY + MINUTE, 240.0, in_window=False)
    state = cost.record_wake(cost.record_wake(state, wake), wake)
    assert (state.today.wakes, state.week.wakes, state.total.wakes) == (1, 1, 1)
    earlier = cost.Wake(WEDNESDAY - timedelta(days=2), 200.0, in_window=True)  # Monday
    state = cost.record_wake(state, earlier)
    assert (state.today.wakes, state.week.wakes, state.total.wakes) == (1, 2, 2)
    assert state.week.wakes_in_window == 1
    assert cost.percentile([w.seconds for w in state.wakes], 0.95) == pytest.approx(238.0)


def test_status_round_trip_and_schema() -> None:
    state = cost.begin(WEDNESDAY, WEDNESDAY, BERLIN)
    on = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    state = cost.advance(state, WEDNESDAY, on, 1, 1, 0.5, BERLIN)
    for minutes in (10, 20, 30):
        state = cost.advance(state, WEDNESDAY + minutes * MINUTE, on, 1, 1, 0.5, BERLIN)
    state = cost.record_wake(state, cost.Wake(WEDNESDAY, 200.0, False))
    written = cost.to_status(state)
    CostStatus.model_validate(written)
    assert written["summary"] == "$0.25 (saved $0.00 (0%))"
    assert written["week"]["nodeHours"] == 0.5
    again = cost.from_status(written)
    assert again is not None
    assert cost.to_status(again) == written
    assert cost.from_status({"updatedAt": "soon"}) is None
    assert cost.from_status(None) is None


@given(
    samples=st.lists(
        st.tuples(st.integers(1, 900), st.integers(0, 3), st.floats(0, 1)), max_size=40
    )
)
def test_totals_only_grow_and_saved_is_never_negative(
    samples: list[tuple[int, int, float]],
) -> None:
    state = cost.begin(WEDNESDAY, WEDNESDAY, BERLIN)
    now = WEDNESDAY
    for seconds, replicas, share in samples:
        now += timedelta(seconds=seconds)
        uses = tuple(cost.NodeUse(f"n{i}", "g4dn.xlarge", share, 0.5) for i in range(replicas))
        before = state.total
        state = cost.advance(state, now, uses, replicas, 1, 0.5, BERLIN)
        assert state.total.node_seconds >= before.node_seconds
        assert state.total.spend >= before.spend
        assert state.total.saved >= -1e-9
    assert state.total.node_seconds <= (now - WEDNESDAY).total_seconds() * 3 + 1e-6


# --- facts from Kubernetes objects -------------------------------------------------------------


def pod_body(
    name: str,
    node_name: str | None,
    gpus: int,
    model: str | None,
    created: datetime,
    ready: datetime | None = None,
) -> dict[str, Any]:
    labels = {MODEL_LABEL: model} if model else {}
    conditions = (
        [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": ready.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
        if ready
        else []
    )
    return {
        "metadata": {
            "name": name,
            "namespace": "ai",
            "labels": labels,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running", "conditions": conditions},
    }


def test_facts_from_objects() -> None:
    body = {
        "metadata": {
            "name": "gpu-1",
            "labels": {
                "node.kubernetes.io/instance-type": "g4dn.xlarge",
                "eks.amazonaws.com/capacityType": "SPOT",
                "topology.kubernetes.io/region": "eu-central-1",
            },
        }
    }
    assert node_facts(body) == cost.NodeFacts("gpu-1", "g4dn.xlarge", "spot", "eu-central-1")
    assert pod_facts(pod_body("p", "gpu-1", 1, "reception", WEDNESDAY)) == cost.PodFacts(
        "gpu-1", 1, ME
    )
    assert pod_facts(pod_body("p", None, 1, "reception", WEDNESDAY)) is None  # not bound yet
    assert pod_facts(pod_body("p", "gpu-1", 0, "reception", WEDNESDAY)) is None  # no GPU


def test_wakes_are_starts_from_zero() -> None:
    first = pod_body("r-0", "n1", 1, "reception", WEDNESDAY, WEDNESDAY + 4 * MINUTE)
    second = pod_body("r-1", "n2", 1, "reception", WEDNESDAY + 10 * MINUTE, WEDNESDAY + 14 * MINUTE)
    found = wakes([first, second], lambda _moment: False)
    assert found == [cost.Wake(WEDNESDAY, 240.0, False)]  # r-1 was a scale-up
    spec = make_spec(schedule=OFFICE_HOURS)
    inside = window_test(spec)
    assert inside(WEDNESDAY)
    assert not inside(utc("2026-11-25T07:55+01:00"))  # prewarm is not the window


def test_sample_with_fake_prices() -> None:
    spec = make_spec(schedule=OFFICE_HOURS, gpu={"products": ["Tesla-T4"]})
    created = WEDNESDAY - timedelta(hours=2)
    model_pods = [pod_body("r-0", "n1", 1, "reception", WEDNESDAY - MINUTE)]
    node_pods = [cost.PodFacts("n1", 1, ME)]
    nodes = {"n1": node("n1")}
    state, previous = sample(ME, spec, {}, created, model_pods, node_pods, nodes, PRICES, WEDNESDAY)
    assert previous is None
    assert state.total.since == created
    assert state.uses == (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    later, before = sample(
        ME, spec, {"cost": cost.to_status(state)}, created, model_pods, node_pods, nodes, PRICES,
        WEDNESDAY + 6 * MINUTE,
    )  # fmt: skip
    assert before is not None
    assert later.total.spend == pytest.approx(0.05)
    assert later.total.node_seconds == pytest.approx(360)


def test_finished_days_are_kept_for_reports() -> None:
    monday = utc("2026-11-23T12:00+01:00")
    state = cost.begin(monday - timedelta(days=30), monday, BERLIN)
    on = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.5),)
    now = monday
    for _ in range(3 * 24 * 6):  # three days, a sample every 10 minutes, always on
        state = cost.advance(state, now, on, 1, 1, 0.5, BERLIN)
        now += 10 * MINUTE
    assert [day.since for day in state.days] == [
        utc("2026-11-23T00:00+01:00"),
        utc("2026-11-24T00:00+01:00"),
        utc("2026-11-25T00:00+01:00"),
    ]
    assert state.days[1].node_seconds == pytest.approx(24 * 3600)
    two = cost.last_days(state, 2)
    assert two.since == utc("2026-11-25T00:00+01:00")
    assert two.node_seconds == pytest.approx(24 * 3600 + state.today.node_seconds)
    again = cost.from_status(cost.to_status(state))
    assert again is not None
    assert cost.to_status(again) == cost.to_status(state)
