"""Who holds a bare model name across namespaces, as the gateway decides it. Pure.

The gateway reaches every model as `NAMESPACE/ALIAS`; the bare alias goes to the oldest
model with that alias (creationTimestamp, then namespace and name: the gateway's catalog
orders the same way). A model whose bare alias another one holds gets the condition
`NameUnique=False` (reason `NameTaken`, naming the holder) and one Warning Event when that
starts, so a staging model never takes production's traffic unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from siesta.policy import Condition

NAME_CONDITION = "NameUnique"


@dataclass(frozen=True, order=True)
class NameClaim:
    """One model's claim on its alias; ordered as the gateway orders claims (oldest first)."""

    created: str
    namespace: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.namespace}/{self.name}"


def alias_of(body: Mapping[str, Any]) -> str:
    """The alias the gateway routes by: spec.model.alias, else metadata.name."""
    spec = body.get("spec") or {}
    model = spec.get("model") if isinstance(spec, Mapping) else None
    alias = model.get("alias") if isinstance(model, Mapping) else None
    return str(alias or (body.get("metadata") or {}).get("name") or "")


def bare_name_holder(me: NameClaim, claims: Iterable[NameClaim]) -> NameClaim | None:
    """The model holding the alias `me` claims too, when that is another model."""
    holder = min([me, *claims])
    return None if holder == me else holder


def name_event_due(condition: Condition, previous: Mapping[str, Any]) -> bool:
    """A Warning Event when the name becomes taken (or by another holder), not each step."""
    if condition.status:
        return False
    before: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == NAME_CONDITION), {}
    )
    return not (before.get("status") == "False" and before.get("message") == condition.message)


def name_condition(alias: str, namespace: str, name: str, holder: NameClaim | None) -> Condition:
    if holder is None:
        return Condition(NAME_CONDITION, True, "NameHeld", f"clients reach it as {alias!r}")
    # In another namespace NAMESPACE/ALIAS is this model's; in the same one, only its name.
    reach = f"{namespace}/{alias}" if holder.namespace != namespace else f"{namespace}/{name}"
    return Condition(
        NAME_CONDITION,
        False,
        "NameTaken",
        f"the name {alias!r} is held by the older {holder.qualified}; clients reach this "
        f"model as {reach!r}",
    )
