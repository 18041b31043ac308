#!/usr/bin/env bash
# Stops the test cluster started by up.sh (and its real node, node.sh) and removes its
# state; leaves no process behind. Harmless when no cluster runs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"
# shellcheck source=karpenter.sh
. "$HERE/karpenter.sh"

"$HERE/node.sh" down

if [[ ! -d $CLUSTER_DIR ]]; then
  log "no cluster '$SIESTA_CLUSTER_NAME'"
  exit 0
fi
# Karpenter first: it must not react to the cluster going away.
karpenter_down
# The pids kwokctl recorded for the processes it started, to check after the delete.
pids=()
for f in "$CLUSTER_DIR"/pids/*.pid; do
  [[ -f $f ]] && pids+=("$(cat "$f")")
done
if [[ -x $CLUSTER_BIN_DIR/kwokctl ]]; then
  "$CLUSTER_BIN_DIR/kwokctl" --name "$SIESTA_CLUSTER_NAME" delete cluster >&2 || true
fi
for pid in "${pids[@]}"; do
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || continue 2; sleep 0.1; done
  log "process $pid still running after delete; killing it"
  kill -9 "$pid" 2>/dev/null || true
done
rm -rf "$CLUSTER_DIR"
log "cluster '$SIESTA_CLUSTER_NAME' stopped"
# The seal goes with the last cluster on this machine (another may still hand out addresses).
if ! compgen -G "$KWOK_WORKDIR/clusters/*/kubeconfig.yaml" >/dev/null; then
  "$HERE/seal.sh" down
fi
