#!/usr/bin/env bash
# A real node for the test cluster: kubelet (built from k8s.io/kubernetes by build.sh) with
# containerd (Debian's) + runc, CNI from Debian's containernetworking-plugins (bridge,
# host-local, portmap, loopback), kube-proxy (iptables) for Services, the pause image built
# here, and Siesta's images imported from `make images`. The node registers as `real-0`,
# dressed as a g4dn GPU node (GPU Operator labels, nvidia.com/gpu capacity through a status
# patch, the nvidia.com/gpu:NoSchedule taint) so that the operator's own affinity and
# tolerations are what lands a model there; `siesta.test/kubelet=real` tells it from the
# kwok nodes of the same pool. kwok nodes stay for scale tests and fake GPU pools.
#
#   kit/cluster/node.sh up     (cluster from up.sh running; images from scripts/images.sh)
#   kit/cluster/node.sh down
#
# PersistentVolumeClaims bind through the default StorageClass `siesta-local`, a local-path
# provisioner (kit/localworld/local_provisioner.py) making directories under the state folder.
#
# State: $SIESTA_CACHE/node/<cluster>/ (containerd's image store survives a `down`, so the
# second `up` imports nothing). Pod network 10.85.0.0/24 on bridge siesta-cni0.
# Env: SIESTA_CLUSTER_NAME, SIESTA_CACHE, SIESTA_NODE_NAME (default real-0).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"

NODE_NAME=${SIESTA_NODE_NAME:-real-0}
NODE_DIR=$SIESTA_CACHE/node/$SIESTA_CLUSTER_NAME
RUN_DIR=$NODE_DIR/run
POD_CIDR=10.85.0.0/24
BRIDGE=siesta-cni0
KUBELET_PORT=10250
KUBECTL=("$CLUSTER_BIN_DIR/kubectl" --kubeconfig "$CLUSTER_KUBECONFIG")
CTR=(ctr --address "$RUN_DIR/containerd.sock" --namespace k8s.io)
IMAGES_ENV=$SIESTA_CACHE/images/images.env

node_ip() { ip -4 route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p'; }

# start NAME CMD...: a background process in its own session, pid in $RUN_DIR/NAME.pid.
start() {
  local name=$1; shift
  if [[ -f $RUN_DIR/$name.pid ]] && kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
    return 0
  fi
  setsid "$@" >"$NODE_DIR/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$RUN_DIR/$name.pid"
}

stop() { # NAME [GRACE_SECONDS]
  local file=$RUN_DIR/$1.pid pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < ${2:-10} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

wait_until() { # SECONDS WHAT CMD...
  local limit=$1 what=$2; shift 2
  for ((i = 0; i < limit * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "$what: not after ${limit}s; see $NODE_DIR/*.log"
  return 1
}

# --- containerd ------------------------------------------------------------------------
write_containerd_config() {
  local pause=$1
  cat >"$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd"
state = "$RUN_DIR/containerd"
[grpc]
  address = "$RUN_DIR/containerd.sock"
[ttrpc]
  address = "$RUN_DIR/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause"
  # Without CAP_SYS_RESOURCE runc cannot lower a process's oom_score_adj (the pause
  # container asks for -998): runc init dies with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
EOF
}

write_cni_config() {
  mkdir -p "$NODE_DIR/cni"
  cat >"$NODE_DIR/cni/10-siesta.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "siesta-$SIESTA_CLUSTER_NAME", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true,
   "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$RUN_DIR/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}
]}
EOF
}

start_containerd() {
  write_containerd_config "$SIESTA_PAUSE_IMAGE"
  write_cni_config
  start containerd containerd --config "$NODE_DIR/containerd.toml"
  wait_until 30 "containerd answers" "${CTR[@]}" version
}

# Images from `make images` that containerd lacks (by reference) are imported.
import_images() {
  local ref archive
  for pair in "$SIESTA_PAUSE_IMAGE=$SIESTA_ARCHIVE_PAUSE" "$SIESTA_IMAGE=$SIESTA_ARCHIVE_SIESTA" \
    "$SIESTA_SERVER_IMAGE=$SIESTA_ARCHIVE_SIESTA_SERVER"; do
    ref=${pair%%=*} archive=${pair#*=}
    if ! "${CTR[@]}" images ls -q | grep -qxF "$ref"; then
      log "importing $ref into containerd"
      "${CTR[@]}" images import "$archive" >/dev/null
    fi
  done
}

# --- kubelet -------------------------------------------------------------------------------
write_kubelet_config() {
  local ca=$1
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host mounts cgroup v1 (with a unified hierarchy beside it); kubelet 1.35 refuses
# cgroup v1 unless told otherwise. No systemd here: the cgroupfs driver.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$RUN_DIR/containerd.sock
address: $(node_ip)
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
# The API server calls the kubelet (logs, exec) without a client certificate of its own.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $ca}
authorization: {mode: AlwaysAllow}
podLogsDir: $NODE_DIR/pod-logs
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A shared development machine: never evict for disk or memory the others use.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
  - {key: nvidia.com/gpu, value: "true", effect: NoSchedule}
maxPods: 30
EOF
}

# Another cluster's real node (the demo's, or a test's) holds the kubelet port: say so.
kubelet_port_taken() {
  [[ -f $RUN_DIR/kubelet.pid ]] && kill -0 "$(cat "$RUN_DIR/kubelet.pid")" 2>/dev/null && return 1
  (: <"/dev/tcp/$(node_ip)/$KUBELET_PORT") 2>/dev/null
}

start_kubelet() {
  local ca
  ca=$(kubeconfig_ca)
  write_kubelet_config "$ca"
  mkdir -p "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs"
  # The admin kubeconfig: the kubelet is trusted like the control plane's own processes.
  start kubelet "$CLUSTER_BIN_DIR/kubelet" \
    --config "$NODE_DIR/kubelet.yaml" \
    --kubeconfig "$CLUSTER_KUBECONFIG" \
    --root-dir "$NODE_DIR/kubelet" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$(node_ip)" \
    --node-labels "$(node_labels)" \
    --v 2
}

# The CA that signed the cluster's client certificates (for the kubelet's x509 authn).
kubeconfig_ca() {
  local file=$NODE_DIR/ca.crt
  "${KUBECTL[@]}" config view --raw --minify --flatten \
    -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$file"
  echo "$file"
}

# Labels of a g4dn node (kit/localworld/nodes.py, the pool "g4dn"), plus the real-node mark.
node_labels() {
  (cd "$ROOT/kit" && python3 -c '
import sys
from localworld.nodes import gpu_node_manifest
labels = gpu_node_manifest(sys.argv[1], "g4dn", managed_by_kwok=False)["metadata"]["labels"]
labels["siesta.test/kubelet"] = "real"
print(",".join(f"{k}={v}" for k, v in sorted(labels.items())))
' "$NODE_NAME")
}

# nvidia.com/gpu capacity, as a device plugin would advertise it (the documented way to
# advertise an extended resource the kubelet does not manage: a node status patch).
advertise_gpu() {
  "${KUBECTL[@]}" patch node "$NODE_NAME" --subresource=status --type=json -p \
    '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"}]' >/dev/null
}

node_ready() {
  [[ $("${KUBECTL[@]}" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

gpu_advertised() {
  [[ $("${KUBECTL[@]}" get node "$NODE_NAME" \
    -o jsonpath='{.status.allocatable.nvidia\.com/gpu}' 2>/dev/null) == 1 ]]
}

# --- kube-proxy ------------------------------------------------------------------------------
start_kube_proxy() {
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CLUSTER_KUBECONFIG}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
metricsBindAddress: ""
healthzBindAddress: ""
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
EOF
  start kube-proxy "$CLUSTER_BIN_DIR/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml" --v 1
}

# --- storage ---------------------------------------------------------------------------------
# The default StorageClass `siesta-local` and its provisioner (kit/localworld/local_provisioner.py).
start_provisioner() {
  start provisioner env PYTHONPATH="$ROOT/kit" python3 -m localworld.local_provisioner \
    --kubeconfig "$CLUSTER_KUBECONFIG" --kubectl "$CLUSTER_BIN_DIR/kubectl" \
    --node "$NODE_NAME" --root "$NODE_DIR/volumes"
}

up() {
  [[ -f $IMAGES_ENV ]] || { log "no $IMAGES_ENV: run \`make images\` first"; exit 1; }
  # shellcheck source=/dev/null
  . "$IMAGES_ENV"
  mkdir -p "$NODE_DIR" "$RUN_DIR"
  exec 8>"$NODE_DIR/.lock"
  flock 8
  local t0=$SECONDS
  # Before anything starts: a second containerd, kube-proxy or CNI bridge would fight the
  # running node's (they share the bridge, the pod network and iptables).
  if kubelet_port_taken; then
    log "port $KUBELET_PORT is taken: another real node runs on this machine (one at a time;"
    log "\`make demo-down\` stops the demo's, \`SIESTA_CLUSTER_NAME=NAME kit/cluster/down.sh\` another)"
    exit 1
  fi
  start_containerd
  import_images
  start_kube_proxy
  start_kubelet
  wait_until 120 "node $NODE_NAME Ready" node_ready
  advertise_gpu
  wait_until 30 "nvidia.com/gpu allocatable on $NODE_NAME" gpu_advertised
  start_provisioner
  log "node $NODE_NAME Ready in $((SECONDS - t0))s (kubelet + containerd, pods on $POD_CIDR)"
}

# Pods first (the kubelet stops them with their grace periods), then the node's processes.
down() {
  [[ -d $NODE_DIR ]] || return 0
  # The pod network and kube-proxy's iptables rules are shared by whichever real node runs:
  # only a node whose own processes ran may take them down (an `up` refused because another
  # node holds the port must leave that node's network alone).
  local ran=0
  [[ -f $RUN_DIR/containerd.pid || -f $RUN_DIR/kube-proxy.pid ]] && ran=1
  if [[ -f $RUN_DIR/kubelet.pid ]] && [[ -f $CLUSTER_KUBECONFIG ]]; then
    "${KUBECTL[@]}" delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  stop kubelet 10
  stop kube-proxy 5
  # Its iptables rules outlive it: remove them (other clusters' Service IPs overlap ours).
  ((ran)) && { "$CLUSTER_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true; }
  stop provisioner 5
  if [[ -S $RUN_DIR/containerd.sock ]]; then
    local task
    for task in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
    for task in $("${CTR[@]}" containers ls -q 2>/dev/null); do
      "${CTR[@]}" tasks delete -f "$task" >/dev/null 2>&1 || true
      "${CTR[@]}" containers delete "$task" >/dev/null 2>&1 || true
    done
  fi
  stop containerd 10
  # Mounts the kubelet made for pods (volumes, projected tokens).
  local mount
  for mount in $(awk -v dir="$NODE_DIR/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mount" || true
  done
  ((ran)) && { ip link del "$BRIDGE" 2>/dev/null || true; }
  rm -rf "$RUN_DIR" "$NODE_DIR/kubelet" "$NODE_DIR/volumes"
  log "node $NODE_NAME stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
