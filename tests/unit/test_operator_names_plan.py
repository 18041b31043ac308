"""Who holds a bare model name across namespaces (pure), as the gateway decides it."""

from __future__ import annotations

from siesta.operator.names import (
    NameClaim,
    alias_of,
    bare_name_holder,
    name_condition,
    name_event_due,
)

PROD = NameClaim("2026-01-01T00:00:00Z", "prod", "chat")
STAGING = NameClaim("2026-02-01T00:00:00Z", "staging", "chat")


def test_the_oldest_claim_holds_the_bare_name() -> None:
    assert bare_name_holder(STAGING, [PROD, STAGING]) == PROD
    assert bare_name_holder(PROD, [PROD, STAGING]) is None
    assert bare_name_holder(PROD, []) is None
    same_time = NameClaim(PROD.created, "a-team", "chat")  # ties: namespace, then name
    assert bare_name_holder(PROD, [same_time]) == same_time


def test_alias_defaults_to_the_name() -> None:
    assert alias_of({"metadata": {"name": "m"}, "spec": {"model": {"alias": "chat"}}}) == "chat"
    assert alias_of({"metadata": {"name": "m"}, "spec": {"model": {}}}) == "m"


def test_a_taken_name_is_a_condition_and_one_warning() -> None:
    taken = name_condition("chat", "staging", "chat", PROD)
    assert (taken.status, taken.reason) == (False, "NameTaken")
    assert "prod/chat" in taken.message
    assert "'staging/chat'" in taken.message
    assert name_event_due(taken, {})
    written = {"conditions": [{"type": "NameUnique", "status": "False", "message": taken.message}]}
    assert not name_event_due(taken, written)  # said once, not on every step
    same_namespace = name_condition("chat", "prod", "chat-v2", PROD)
    assert "'prod/chat-v2'" in same_namespace.message  # prod/chat is the holder's
    held = name_condition("chat", "prod", "chat", None)
    assert held.status
    assert not name_event_due(held, written)
