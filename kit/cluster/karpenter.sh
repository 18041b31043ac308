# shellcheck shell=bash
# Karpenter (its kwok cloud provider) in the test cluster: sourced by build.sh, up.sh and
# down.sh after env.sh. Everything Karpenter-specific lives here.
#
# - karpenter_build: `go install sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION` into the
#   cache as `karpenter-kwok`, and the CRDs (karpenter.sh + KWOKNodeClass) copied from the
#   same module into $KARPENTER_DIR/crds.
# - karpenter_up: CRDs applied, then the controller started as a local process (pid in
#   $CLUSTER_DIR/karpenter/karpenter.pid, log next to it) on the admin kubeconfig, with the
#   instance types of kit/cluster/karpenter/instance-types.json. NodePools are left to
#   the tests and the demo (kit/localworld/karpenter.py derives them from
#   deploy/nodegroups/karpenter-gpu.yaml): without one Karpenter launches nothing.
# - karpenter_down: stops the controller.
#
# Karpenter's kwok provider creates nodes annotated kwok.x-k8s.io/node=fake; up.sh keeps
# kwok-controller off nodes labelled karpenter.sh/nodepool, so that a process kubelet
# (kit/localworld/karpenter_nodes.py) serves them and their pods run for real.
#
# Env: SIESTA_KARPENTER=0 leaves Karpenter out (not built, not started).

# v1.13.0: the newest release the installed Go (1.26.8) builds; v1.14+ need Go >= 1.26.10.
KARPENTER_VERSION=${KARPENTER_VERSION:-v1.13.0}
KARPENTER_DIR=$SIESTA_CACHE/karpenter/$KARPENTER_VERSION
KARPENTER_BIN=$KARPENTER_DIR/karpenter-kwok
KARPENTER_STATE=$CLUSTER_DIR/karpenter
KARPENTER_FILES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/karpenter

karpenter_enabled() { [[ ${SIESTA_KARPENTER:-1} != 0 ]]; }

karpenter_build() {
  karpenter_enabled || return 0
  if [[ -x $KARPENTER_BIN && -f $KARPENTER_DIR/crds/.complete ]]; then
    return 0
  fi
  mkdir -p "$KARPENTER_DIR"
  local t0=$SECONDS gobin
  log "building karpenter (kwok provider) $KARPENTER_VERSION ..."
  gobin=$(mktemp -d "$KARPENTER_DIR/.install.XXXXXX")
  # The module's own go.mod (no replace directives), so `go install pkg@version` works.
  GOBIN=$gobin go install "${PFLAG[@]}" \
    -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=$KARPENTER_VERSION" \
    "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION"
  mv -f "$gobin/kwok" "$KARPENTER_BIN"
  rmdir "$gobin"
  # The CRDs of exactly this release, from the module just built.
  local moddir
  moddir=$(cd "$KARPENTER_DIR" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/karpenter@$KARPENTER_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$KARPENTER_DIR/crds"
  mkdir -p "$KARPENTER_DIR/crds"
  cp "$moddir"/kwok/charts/crds/*.yaml "$moddir"/kwok/apis/crds/*.yaml "$KARPENTER_DIR/crds/"
  chmod -R u+w "$KARPENTER_DIR/crds"
  touch "$KARPENTER_DIR/crds/.complete"
  log "built karpenter $KARPENTER_VERSION in $((SECONDS - t0))s"
}

# kwokctl flags for up.sh: kwok-controller leaves Karpenter's nodes to process kubelets.
KARPENTER_KWOK_ARGS=()
karpenter_enabled &&
  KARPENTER_KWOK_ARGS=(--extra-args 'kwok-controller=manage-nodes-with-label-selector=!karpenter.sh/nodepool')
# A cluster created without those flags cannot host Karpenter: up.sh recreates it.
karpenter_cluster_fits() { ! karpenter_enabled || [[ -f $CLUSTER_DIR/.siesta-karpenter ]]; }
karpenter_mark_cluster() { if karpenter_enabled; then touch "$CLUSTER_DIR/.siesta-karpenter"; fi; }

karpenter_running() {
  [[ -f $KARPENTER_STATE/karpenter.pid ]] && kill -0 "$(cat "$KARPENTER_STATE/karpenter.pid")" 2>/dev/null
}

karpenter_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

karpenter_up() { # KUBECTL...
  karpenter_enabled || return 0
  if karpenter_running; then
    log "karpenter already running (pid $(cat "$KARPENTER_STATE/karpenter.pid"))"
    return 0
  fi
  mkdir -p "$KARPENTER_STATE"
  "$@" apply --server-side --force-conflicts -f "$KARPENTER_DIR/crds/" >/dev/null
  "$@" wait --for condition=established --timeout=60s \
    crd/nodepools.karpenter.sh crd/nodeclaims.karpenter.sh crd/kwoknodeclasses.karpenter.kwok.sh >/dev/null
  local metrics health
  metrics=$(karpenter_free_port)
  health=$(karpenter_free_port)
  # Its own session: it outlives this script, and down.sh stops it by pid.
  KUBECONFIG=$CLUSTER_KUBECONFIG \
    INSTANCE_TYPES_FILE_PATH=$KARPENTER_FILES/instance-types.json \
    DISABLE_LEADER_ELECTION=true \
    METRICS_PORT=$metrics HEALTH_PROBE_PORT=$health \
    LOG_LEVEL=${SIESTA_KARPENTER_LOG_LEVEL:-info} \
    BATCH_IDLE_DURATION=1s BATCH_MAX_DURATION=5s \
    setsid "$KARPENTER_BIN" >"$KARPENTER_STATE/karpenter.log" 2>&1 9>&- </dev/null &
  echo $! >"$KARPENTER_STATE/karpenter.pid"
  printf '%s\n' "$metrics" >"$KARPENTER_STATE/metrics.port"
  # Ready once its caches synced and the CRDs resolve (its /readyz checks both).
  local i
  for ((i = 0; ; i++)); do
    curl -fsS "http://127.0.0.1:$health/readyz" >/dev/null 2>&1 && break
    karpenter_running || { log "karpenter exited:"; tail -20 "$KARPENTER_STATE/karpenter.log" >&2; return 1; }
    ((i < 240)) || { log "karpenter not ready after 120s"; return 1; }
    sleep 0.5
  done
  log "karpenter $KARPENTER_VERSION running (pid $(cat "$KARPENTER_STATE/karpenter.pid"), log $KARPENTER_STATE/karpenter.log)"
}

karpenter_down() {
  [[ -f $KARPENTER_STATE/karpenter.pid ]] || return 0
  local pid i
  pid=$(cat "$KARPENTER_STATE/karpenter.pid")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$KARPENTER_STATE/karpenter.pid"
}
