"""Fixtures for the integration tests (shared ones live in tests/conftest.py)."""

from support.operator_env import operator_access, operator_runner  # noqa: F401
from support.prometheus_env import prometheus  # noqa: F401
