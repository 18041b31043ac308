# Siesta: one entry point for setup, tests, lint, the local cluster and the demo.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test test-unit lint lint-ts fmt generate check-generated demo demo-down images push island

## setup: install Debian packages, the virtualenv and the control plane (idempotent, cached)
setup:
	scripts/setup.sh

## test: the full suite (unit, integration on the real control plane, end to end)
test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

## test-unit: only tests that need no cluster, Prometheus or model server
test-unit:
	$(PY) -m pytest tests -m "not cluster and not prometheus and not llama and not e2e" $(PYTEST_ARGS)

## lint: ruff (format + lint), mypy strict, import rules (pyproject.toml [tool.importlinter]),
## actionlint (.github/workflows), TypeScript (lint-ts)
lint:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	scripts/actionlint.sh
	$(MAKE) --no-print-directory lint-ts

DENO := $(CURDIR)/scripts/deno.sh
## lint-ts: deno fmt/lint/check of clients/typescript and examples/ (installs the pinned Deno)
lint-ts:
	cd clients/typescript && $(DENO) fmt --check && $(DENO) lint && $(DENO) check mod.ts tests/ \
	  && $(DENO) check --config deno.browser.json mod.ts
	cd examples/discovery-island && $(DENO) fmt --check && $(DENO) lint && $(DENO) check *.ts

## island: Discovery Island on http://localhost:8000 against `make demo`'s gateway
island:
	cd examples/discovery-island && $(DENO) task start

fmt:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## generate: regenerate CRDs (and other generated files)
generate:
	$(VENV)/bin/siesta crds --output-dir crds
	$(PY) scripts/chart_crds.py
	$(PY) scripts/grafana_dashboard.py
	$(PY) scripts/chart_readme.py
	$(PY) scripts/render_deploy.py
	$(VENV)/bin/siesta api-docs --output docs/api-reference.md

## check-generated: fail if any generated file differs from what `make generate` writes
check-generated:
	$(PY) -m pytest tests/unit/test_generated.py -q

## images: build the siesta and siesta-server (CPU) images with buildah, cached by content;
## VARIANT=cuda adds siesta-server:<hash>-cuda (a long compile: not in `make test` or .ci/run)
VARIANT ?= cpu
images: setup
	PYTHON=$(CURDIR)/$(PY) VARIANT=$(VARIANT) scripts/images.sh

## push: push the images built here and the chart (OCI) to REGISTRY=HOST[/PATH], tagged with
## the chart's version (until a release exists, the way to install on EKS; scripts/push.sh)
push: images
	REGISTRY=$(REGISTRY) scripts/push.sh

-include kit/cluster/cluster.mk
-include kit/cluster/karpenter.mk
-include scripts/demo.mk

## chart-golden: rewrite the chart's golden renders (tests/chart/golden/) after an intended change
chart-golden:
	UPDATE_GOLDEN=1 $(PY) -m pytest tests/chart/test_chart_render.py -q -k golden
