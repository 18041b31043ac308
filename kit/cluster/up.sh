#!/usr/bin/env bash
# Starts the test cluster (real kube-apiserver, etcd, kube-controller-manager and
# kube-scheduler, kwok for fake nodes) with `kwokctl --runtime binary`, building any
# missing binary first. Creates the default fake node fleet (kit/localworld/nodes.py).
# Harmless on a running cluster. Progress goes to stderr; the LAST line on stdout is the
# kubeconfig path.
#
# Env: SIESTA_CLUSTER_NAME (default siesta), SIESTA_CACHE (default ~/.cache/siesta),
#      SIESTA_GPU_NODES_PER_POOL (default 1), SIESTA_CLUSTER_WAIT (default 5m),
#      SIESTA_KARPENTER (default 1: also start Karpenter, see karpenter.sh).
#      SIESTA_REAL_NODE=1: also start a real node (kubelet + containerd, node.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"
# shellcheck source=karpenter.sh
. "$HERE/karpenter.sh"

"$HERE/build.sh" >/dev/null
# Before any address exists: every range the world hands out ends on this machine.
"$HERE/seal.sh" up
mkdir -p "$KWOK_WORKDIR"
# One `up` at a time on this machine, whatever the cluster name: kwokctl picks free ports
# when it creates a cluster, and two clusters created at once can pick the same ones.
exec 9>"$KWOK_WORKDIR/.up.lock"
flock 9
BIN=$CLUSTER_BIN_DIR
export PATH="$BIN:$PATH"
# kwokctl reads these for what it has no flag for; no download is ever attempted.
export KWOK_KUBECTL_BINARY=$BIN/kubectl KWOK_KUBE_VERSION=$K8S_VERSION
KUBECTL=("$BIN/kubectl" --kubeconfig "$CLUSTER_KUBECONFIG")
kwokctl() { "$BIN/kwokctl" --name "$SIESTA_CLUSTER_NAME" --config "$HERE/kwokctl.yaml" "$@"; }

# Every process kwokctl started is alive and the API server answers.
cluster_healthy() {
  [[ -f $CLUSTER_KUBECONFIG ]] || return 1
  local f n=0
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null || return 1
    n=$((n + 1))
  done
  ((n == 5)) && karpenter_cluster_fits && "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1
}

# A real node's pods reach the API server at this machine's address (node.sh): it must
# listen there too, not only on loopback; and it reaches the kubelet (logs, exec) by the
# node's address (the node name resolves nowhere).
real_node_args=()
if [[ ${SIESTA_REAL_NODE:-} == 1 ]]; then
  real_node_args=(--extra-args kube-apiserver=bind-address=0.0.0.0
    --extra-args kube-apiserver=kubelet-preferred-address-types=InternalIP)
fi

t0=$SECONDS
if cluster_healthy; then
  log "cluster '$SIESTA_CLUSTER_NAME' already running"
else
  if [[ -d $CLUSTER_DIR ]]; then
    log "cluster '$SIESTA_CLUSTER_NAME' exists but is not healthy; recreating it"
    "$HERE/down.sh"
  fi
  log "creating cluster '$SIESTA_CLUSTER_NAME' in $CLUSTER_DIR"
  # A cluster this run starts but cannot finish is stopped again: no process left behind.
  # shellcheck disable=SC2154 # rc is assigned inside the trap
  trap 'rc=$?; if ((rc != 0)); then log "up failed ($rc); stopping the cluster"; "$HERE/down.sh" || true; fi' EXIT
  # kwok plays kubelet only for nodes annotated kwok.x-k8s.io/node=fake, so that other
  # nodes can be served by a test-side process kubelet (see kit/localworld/nodes.py).
  kwokctl create cluster \
    --runtime binary \
    --kube-admission --kube-authorization \
    --kubeconfig "" \
    --quiet-pull \
    --disable-qps-limits \
    --wait "${SIESTA_CLUSTER_WAIT:-5m}" \
    --etcd-binary "$BIN/etcd" \
    --kube-apiserver-binary "$BIN/kube-apiserver" \
    --kube-controller-manager-binary "$BIN/kube-controller-manager" \
    --kube-scheduler-binary "$BIN/kube-scheduler" \
    --kwok-controller-binary "$BIN/kwok" \
    --extra-args kube-apiserver=service-cluster-ip-range=10.96.0.0/16 \
    --extra-args kwok-controller=manage-all-nodes=false \
    --extra-args kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    "${KARPENTER_KWOK_ARGS[@]}" \
    "${real_node_args[@]}" \
    >&2 9>&-  # the cluster's processes must not inherit (and hold) the lock
  rm -f "$CLUSTER_DIR/.siesta-fleet"
  karpenter_mark_cluster
fi

# The controller manager and the scheduler must run (StatefulSets create pods, the
# scheduler binds them): both hold a leader lease once they work.
for lease in kube-controller-manager kube-scheduler; do
  for ((i = 0; ; i++)); do
    "${KUBECTL[@]}" -n kube-system get lease "$lease" >/dev/null 2>&1 && break
    ((i < 120)) || { log "$lease never took its lease"; exit 1; }
    sleep 0.5
  done
done
# Namespaced objects need the default ServiceAccount (created by the controller manager).
for ((i = 0; ; i++)); do
  "${KUBECTL[@]}" -n default get serviceaccount default >/dev/null 2>&1 && break
  ((i < 120)) || { log "default ServiceAccount never appeared"; exit 1; }
  sleep 0.5
done

# The default fleet is added once per cluster: tests may remove nodes, and a second
# `up` must not bring them back.
if [[ ! -f $CLUSTER_DIR/.siesta-fleet ]]; then
  # As a module from tests/: run as a script, kit/localworld/ would come first on sys.path
  # and its operator.py would shadow the standard library's.
  (cd "$ROOT/kit" && SIESTA_KUBECTL=$BIN/kubectl python3 -m localworld.nodes default-fleet \
    "$CLUSTER_KUBECONFIG" "${SIESTA_GPU_NODES_PER_POOL:-1}")
  touch "$CLUSTER_DIR/.siesta-fleet"
fi

# Karpenter (kit/cluster/karpenter.sh), after the fleet: it must see the static nodes.
karpenter_up "${KUBECTL[@]}" 9>&-
if [[ ${SIESTA_REAL_NODE:-} == 1 ]]; then
  "$HERE/node.sh" up 9>&-
fi

log "cluster '$SIESTA_CLUSTER_NAME' ready in $((SECONDS - t0))s; kubectl: $BIN/kubectl"
echo "$CLUSTER_KUBECONFIG"
