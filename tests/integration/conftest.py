"""Fixtures for the integration tests (shared ones live in tests/conftest.py)."""

from localworld.operator_env import operator_access, operator_runner  # noqa: F401
from localworld.prometheus_env import prometheus  # noqa: F401
