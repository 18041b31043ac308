"""Pure scaling policy: schedules, load, demand, idleness. No I/O, no clock, no kopf.

Import rules (pyproject.toml [tool.importlinter], run by `make lint`) and
tests/unit/test_purity.py keep this package free of kopf, Kubernetes clients, network
libraries and clock reads.
"""

from siesta.policy.decide import decide, forecast
from siesta.policy.model import (
    Condition,
    Decision,
    ManualOverride,
    Memory,
    Observed,
    Signals,
    Transition,
)
from siesta.policy.schedule import CompiledSchedule, FloorAt, FloorChange, ScheduleError

__all__ = [
    "CompiledSchedule",
    "Condition",
    "Decision",
    "FloorAt",
    "FloorChange",
    "ManualOverride",
    "Memory",
    "Observed",
    "ScheduleError",
    "Signals",
    "Transition",
    "decide",
    "forecast",
]
