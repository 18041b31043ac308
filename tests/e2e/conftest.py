"""Fixtures of the full loop (tests/support/full_loop.py) and of the operator runner."""

from support.full_loop import gateway_access, loop, model_dir, process_kubelet  # noqa: F401
from support.karpenter import karpenter, karpenter_loop  # noqa: F401
from support.operator_env import operator_access, operator_runner  # noqa: F401
from support.prometheus_env import prometheus  # noqa: F401
