# Karpenter in the test cluster (kit/cluster/karpenter.sh): include from the top-level Makefile.
#   make test-karpenter        every Karpenter end-to-end test (`make test` runs the core one)
#   make bench-karpenter-day   a compressed office day, real loop vs `siesta simulate` (~12 min)
.PHONY: test-karpenter bench-karpenter-day
test-karpenter:
	SIESTA_KARPENTER_ALL=1 $(PY) -m pytest tests/e2e/test_karpenter.py $(PYTEST_ARGS)
bench-karpenter-day:
	PYTHONPATH=kit:tests $(PY) tests/benchmarks/bench_karpenter_day.py $(BENCH_ARGS)
