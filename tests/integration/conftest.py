"""Fixtures for the integration tests (shared ones live in tests/conftest.py)."""

import pytest

from localworld.cluster import Cluster
from localworld.full_loop import model_dir  # noqa: F401
from localworld.gateway_env import install_crd
from localworld.operator_env import operator_access, operator_runner  # noqa: F401
from localworld.prometheus_env import prometheus  # noqa: F401


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    """The ModelDeployment CRD, for tests that run a gateway without an operator."""
    install_crd(cluster)
