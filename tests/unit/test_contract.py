"""The wire contract between operator, gateway and manifests: values pinned, docs in step.

Every other test imports these names from `siesta.api.contract`; this is the one place that
spells the values, so changing one is a deliberate, visible change of the wire format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from siesta.api import contract
from siesta.api.contract import ModelKey, demand_lease_name, gateway_id

CONTRACTS_DOC = Path(__file__).parents[2] / "docs" / "contracts.md"

WIRE_VALUES = {
    "API_VERSION": "siesta.dev/v1alpha1",
    "KIND": "ModelDeployment",
    "PLURAL": "modeldeployments",
    "MODEL_LABEL": "siesta.dev/modeldeployment",
    "CONFIG_HASH_ANNOTATION": "siesta.dev/config-hash",
    "PENDING_ANNOTATION": "siesta.dev/pending-requests",
    "IN_FLIGHT_ANNOTATION": "siesta.dev/in-flight-requests",
    "LEASE_DURATION_SECONDS": 30,
    "HTTP_PORT_NAME": "http",
    "DEFAULT_IDLE_TIMEOUT": "15m",
    "DEFAULT_WAKE_TIMEOUT": "10m",
    "DEFAULT_TARGET_PER_REPLICA": 3.0,
}


@pytest.mark.parametrize(("name", "value"), WIRE_VALUES.items())
def test_wire_value_is_pinned(name: str, value: object) -> None:
    assert getattr(contract, name) == value


@pytest.mark.parametrize(
    "name",
    ["MODEL_LABEL", "PENDING_ANNOTATION", "IN_FLIGHT_ANNOTATION", "DEFAULT_IDLE_TIMEOUT"],
)
def test_contracts_doc_names_the_value(name: str) -> None:
    assert f"{getattr(contract, name)}" in CONTRACTS_DOC.read_text()


def test_gateway_id_is_8_stable_hex_chars_per_pod() -> None:
    first = gateway_id("siesta-gateway-7d9f-abc")
    assert first == gateway_id("siesta-gateway-7d9f-abc")
    assert first != gateway_id("siesta-gateway-7d9f-xyz")
    assert len(first) == 8
    int(first, 16)


def test_demand_lease_name_is_model_demand_gateway_id() -> None:
    assert demand_lease_name("reception-7b", "gw-0") == f"reception-7b-demand-{gateway_id('gw-0')}"


def test_model_key_formats_and_parses_back() -> None:
    key = ModelKey("ai", "reception-7b")
    assert ModelKey.parse(str(key)) == key


def test_model_key_equals_the_index_tuple() -> None:
    assert {("ai", "m"): 1}[ModelKey("ai", "m")] == 1


@pytest.mark.parametrize("text", ["", "ai", "/m", "ai/", "ai/m/x"])
def test_model_key_rejects_text_that_is_not_namespace_slash_name(text: str) -> None:
    with pytest.raises(ValueError, match="namespace/name"):
        ModelKey.parse(text)
