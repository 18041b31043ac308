"""The cost simulator: request traces replayed through the real `siesta.policy.decide`.

trace (read, check, generate) -> world (the stated assumptions) -> engine (the event loop)
-> policies (comparison specs) -> report (metrics, table, JSON) -> plot (optional).
No Kubernetes client and no clock: simulated time is an argument everywhere.
"""
