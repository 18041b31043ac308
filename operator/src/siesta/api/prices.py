"""GPU instance prices: the one table behind the chart's default `operator.cost.prices`, the
operator's fallback when the chart gives none, and `siesta simulate`.

AWS EC2 On-Demand, Linux, USD per instance-hour, from
https://aws.amazon.com/ec2/pricing/on-demand/: us-east-1 as listed in June 2026 (us-west-2
lists the same); eu-central-1 and eu-west-1 as listed in 2026, not re-checked since.
tests/chart checks that the chart's defaults are this table.
"""

from __future__ import annotations

DEFAULT_REGION = "us-east-1"

_US: dict[str, float] = {
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
}

GPU_ON_DEMAND: dict[str, dict[str, float]] = {
    "us-east-1": _US,
    "us-west-2": dict(_US),
    "eu-central-1": {
        "g4dn.xlarge": 0.658,
        "g4dn.2xlarge": 0.94,
        "g5.xlarge": 1.258,
        "g5.2xlarge": 1.516,
    },
    "eu-west-1": {
        "g4dn.xlarge": 0.587,
        "g4dn.2xlarge": 0.838,
        "g5.xlarge": 1.123,
        "g5.2xlarge": 1.353,
    },
}
"""Region -> instance type -> USD per hour."""
