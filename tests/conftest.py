"""Shared pytest fixtures: see tests/support/."""

from support.cluster import cluster, namespace  # noqa: F401
