"""Fixtures of the full loop (kit/localworld/full_loop.py) and of the operator runner."""

from localworld.full_loop import gateway_access, loop, model_dir, process_kubelet  # noqa: F401
from localworld.karpenter import karpenter, karpenter_loop  # noqa: F401
from localworld.operator_env import operator_access, operator_runner  # noqa: F401
from localworld.prometheus_env import prometheus  # noqa: F401
