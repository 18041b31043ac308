"""The chart's default prices are the one shared table (siesta.api.prices), which the
operator also falls back to and `siesta simulate` prices its GPU nodes with."""

from __future__ import annotations

import json

import pytest

from localworld.helm import CHART, objects, operator_env, template
from siesta.api.prices import DEFAULT_REGION, GPU_ON_DEMAND
from siesta.operator import cost, cost_loop
from siesta.sim.world import INSTANCE_PRICES


def test_the_chart_renders_the_shared_table_for_the_operator() -> None:
    env = operator_env(objects(template("-f", str(CHART / "ci" / "default-values.yaml"))))
    prices = json.loads(env["SIESTA_COST_PRICES"])
    assert prices == {region: {"on-demand": types} for region, types in GPU_ON_DEMAND.items()}
    assert env["SIESTA_COST_REGION"] == DEFAULT_REGION


def test_without_chart_prices_the_operator_uses_the_same_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SIESTA_COST_PRICES", raising=False)
    monkeypatch.setenv("SIESTA_COST_REGION", "eu-west-1")
    cost_loop.price_table.cache_clear()
    try:
        table = cost_loop.price_table()
    finally:
        cost_loop.price_table.cache_clear()
    for region, types in GPU_ON_DEMAND.items():
        for instance, price in types.items():
            assert table.price(instance, cost.ON_DEMAND, region) == price
    # Nodes without a region label are priced in the configured region, not us-east-1.
    assert table.price("g5.xlarge") == GPU_ON_DEMAND["eu-west-1"]["g5.xlarge"]


def test_the_simulator_prices_its_gpu_types_from_the_same_table() -> None:
    for instance, price in INSTANCE_PRICES.items():
        assert GPU_ON_DEMAND[DEFAULT_REGION][instance] == price
