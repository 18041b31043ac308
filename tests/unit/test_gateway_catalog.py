"""The catalog: models by alias, ready endpoints from EndpointSlices, change callbacks."""

from __future__ import annotations

from typing import Any

from siesta.gateway.catalog import Catalog, endpoints_from_slice, model_from_object


def md(name: str, namespace: str = "ai", alias: str | None = None, **spec: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"uri": "file:///m.gguf"}
    if alias:
        model["alias"] = alias
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "creationTimestamp": spec.pop("created", "2026-01-01T00:00:00Z")},
        "spec": {"model": model, **spec},
        "status": {"phase": "ScaledToZero", "replicas": 0, "readyReplicas": 0},
    }  # fmt: skip


def eps(
    name: str, service: str, *endpoints: tuple[str, bool], namespace: str = "ai"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {"kind": "Pod", "name": f"pod-{ip}", "uid": f"u-{ip}"},
            }
            for ip, ready in endpoints
        ],
    }


def test_alias_defaults_to_name_and_wake_timeout_parses() -> None:
    info = model_from_object(md("m", scaling={"wakeTimeout": "90s"}))
    assert (info.alias, info.wake_timeout, info.phase) == ("m", 90.0, "ScaledToZero")
    assert model_from_object(md("m", alias="llama-7b")).alias == "llama-7b"
    assert model_from_object(md("m")).wake_timeout == 600.0  # the API default, 10m
    assert model_from_object(md("m")).idle_timeout is None
    assert model_from_object(md("m", scaling={"idleTimeout": "2m"})).idle_timeout == 120.0


def test_only_ready_endpoints_on_the_http_port() -> None:
    found = endpoints_from_slice(eps("s", "m", ("10.0.0.1", True), ("10.0.0.2", False)))
    assert [(e.address, e.port) for e in found] == [("10.0.0.1", 8080)]
    assert found[0].url == "http://10.0.0.1:8080"
    terminating = eps("s", "m", ("10.0.0.3", True))
    terminating["endpoints"][0]["conditions"]["terminating"] = True
    assert endpoints_from_slice(terminating) == []


def test_catalog_tracks_models_and_endpoints() -> None:
    changed: list[tuple[str, str]] = []
    catalog = Catalog(on_endpoints=changed.append)
    catalog.replace_models([md("m", alias="chat")])
    assert catalog.model("chat") is not None
    assert catalog.model("m") is None
    catalog.apply_slice("ADDED", eps("m-abc", "m", ("10.0.0.1", False)))
    assert catalog.endpoints(("ai", "m")) == []
    assert changed == []
    catalog.apply_slice("MODIFIED", eps("m-abc", "m", ("10.0.0.1", True)))
    assert [e.address for e in catalog.endpoints(("ai", "m"))] == ["10.0.0.1"]
    assert changed == [("ai", "m")]
    catalog.apply_slice("ADDED", eps("m-def", "m", ("10.0.0.2", True)))
    assert len(catalog.endpoints(("ai", "m"))) == 2
    catalog.apply_slice("DELETED", eps("m-abc", "m"))
    catalog.apply_slice("DELETED", eps("m-def", "m"))
    assert catalog.endpoints(("ai", "m")) == []
    catalog.apply_model("DELETED", md("m", alias="chat"))
    assert catalog.models() == []
    assert changed[-1] == ("ai", "m")  # held requests are woken to learn it is gone


def test_names_per_namespace_and_the_oldest_holds_the_bare_alias() -> None:
    catalog = Catalog()
    catalog.replace_models(
        [
            md("m", namespace="prod", alias="chat", created="2026-01-02T00:00:00Z"),
            md("m", namespace="staging", alias="chat", created="2026-01-03T00:00:00Z"),
        ]
    )
    bare = catalog.route("chat")
    assert bare is not None
    assert (bare.model.namespace, bare.served) == ("prod", "chat")
    staging = catalog.route("staging/chat")
    assert staging is not None
    assert (staging.model.namespace, staging.served) == ("staging", "chat")
    by_name = catalog.route("staging/m")  # NAMESPACE/NAME as well, not listed
    assert by_name is not None
    assert by_name.model.key == ("staging", "m")
    assert catalog.names() == ["chat", "prod/chat", "staging/chat"]
    assert catalog.holder(staging.model) == bare.model
    assert catalog.holder(bare.model) is None
    # The holder goes away: the bare alias is the other's now.
    catalog.apply_model("DELETED", md("m", namespace="prod", alias="chat"))
    moved = catalog.route("chat")
    assert moved is not None
    assert moved.model.namespace == "staging"


def test_relist_of_one_namespace_keeps_the_others() -> None:
    catalog = Catalog()
    catalog.replace_models([md("x", namespace="a")], "a")
    catalog.replace_models([md("y", namespace="b")], "b")
    catalog.replace_models([], "a")
    assert [m.name for m in catalog.models()] == ["y"]
    catalog.replace_slices([eps("y-1", "y", ("10.0.0.9", True), namespace="b")], "b")
    catalog.replace_slices([], "a")
    assert len(catalog.endpoints(("b", "y"))) == 1
    catalog.replace_slices([], "b")
    assert catalog.endpoints(("b", "y")) == []


def test_adapter_names_route_to_their_base_model() -> None:
    catalog = Catalog()
    adapters = [{"name": "support", "uri": "file:///s.gguf"}, {"name": "sales", "uri": "/x"}]
    catalog.replace_models(
        [
            md("base", alias="llama-7b", adapters=adapters),
            # Younger: its adapter "support" loses to base's, its alias "sales" beats an adapter.
            md("other", alias="sales", adapters=[{"name": "support", "uri": "/y"}],
               created="2026-02-01T00:00:00Z"),
        ]
    )  # fmt: skip
    support = catalog.model("support")
    assert support is not None
    assert support.name == "base"
    sales = catalog.model("sales")
    assert sales is not None
    assert sales.name == "other"
    assert catalog.names() == [
        "llama-7b", "sales", "support", "ai/llama-7b", "ai/sales", "ai/support",
    ]  # fmt: skip
    other_support = catalog.route("ai/support")
    assert other_support is not None
    assert other_support.model.name == "base"  # one namespace: the older keeps it too
