"""The operator's fallbacks: load from the servers' own /metrics or the gateways' in-flight
counts when Prometheus cannot answer, and peering that never waits in silence. Pure."""

from __future__ import annotations

import pytest

from siesta.operator.load import LoadReading, with_fallback
from siesta.operator.preflight import Found, plan_peering
from siesta.operator.server_load import load_from_exposition

EXPOSITION = """\
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2.0
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3.0
# HELP llamacpp:n_decode Total number of llama_decode() calls
# TYPE llamacpp:n_decode counter
llamacpp:n_decode_total 17.0
"""
DOWN = LoadReading(None, "Prometheus query failed: cannot connect to Prometheus")


def test_load_from_a_servers_metrics() -> None:
    assert load_from_exposition(EXPOSITION) == 5.0


def test_a_server_without_the_series_is_no_answer() -> None:
    with pytest.raises(ValueError, match="requests_deferred"):
        load_from_exposition("llamacpp:requests_processing 1\n")


def test_prometheus_wins_when_it_answers() -> None:
    assert with_fallback(LoadReading(1.0), LoadReading(7.0, source="servers"), 3).value == 1.0


def test_servers_answer_when_prometheus_does_not() -> None:
    reading = with_fallback(DOWN, LoadReading(0.0, source="servers"), 2)
    assert reading == LoadReading(0.0, DOWN.error, "servers")


def test_gateway_in_flight_when_the_servers_do_not_answer() -> None:
    servers = LoadReading(None, "model servers' /metrics: refused", source="servers")
    assert with_fallback(DOWN, servers, 2) == LoadReading(2.0, DOWN.error, "gateway")


def test_unavailable_only_while_no_source_answers() -> None:
    servers = LoadReading(None, "model servers' /metrics: refused", source="servers")
    reading = with_fallback(DOWN, servers, None)
    assert reading.value is None
    assert reading.error == f"{DOWN.error}; model servers' /metrics: refused"


def test_peering_object_present() -> None:
    plan = plan_peering("siesta", (), Found(True, True, {"": True}))
    assert (plan.standalone, plan.peering, plan.warnings) == (False, "siesta", ())


def test_no_peering_crd_runs_standalone_and_says_how_to_fix_it() -> None:
    plan = plan_peering("siesta", (), Found(True, False))
    assert plan.standalone
    assert "no ClusterKopfPeering CRD" in plan.warnings[0]
    assert "kubectl apply -f deploy/peering/kopf-peering.yaml" in plan.warnings[0]
    assert plan.health()["peering"] == "standalone"


def test_missing_peering_object_in_a_namespace() -> None:
    plan = plan_peering("siesta", ("ai", "ml"), Found(True, True, {"ai": True, "ml": False}))
    assert plan.standalone
    assert "KopfPeering 'siesta' not found in ml" in plan.warnings[0]


def test_missing_model_crd_is_said_at_once() -> None:
    plan = plan_peering("", (), Found(False, False))
    assert plan.standalone
    assert plan.warnings == (
        "the CRD modeldeployments.siesta.dev (v1alpha1) is not installed: waiting for it "
        "(kubectl apply -f crds/)",
    )


def test_missing_permissions_are_said_at_once() -> None:
    found = Found(True, True, {"": True}, denied=("watch pods", "patch statefulsets/scale"))
    plan = plan_peering("siesta", (), found)
    assert not plan.standalone
    assert plan.warnings == (
        "not allowed to watch pods, patch statefulsets/scale: models cannot be served until "
        "the RBAC allows it (kubectl apply -f deploy/rbac/operator-rbac.yaml, or the chart's)",
    )
