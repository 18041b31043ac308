"""Shared pytest fixtures: see kit/localworld/."""

from localworld.cluster import cluster, namespace  # noqa: F401
