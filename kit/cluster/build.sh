#!/usr/bin/env bash
# Builds whatever is missing of the test cluster's binaries into the cache
# ($SIESTA_CACHE/cluster/<k8s-version>/bin): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and etcd from this Go module (kubelet and kube-proxy for the
# real node, kit/cluster/node.sh); kwok, kwokctl and helm with
# `go install pkg@version`. Idempotent: a second run checks version stamps and
# returns in well under a second. Installs nothing else. Progress goes to stderr;
# the last line on stdout is the bin directory.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
# Go builds GOMAXPROCS packages at once; allow a lower cap on busy machines.
PAR=${SIESTA_GO_PARALLEL:-}
PFLAG=()
[[ -n $PAR ]] && PFLAG=(-p "$PAR")

mkdir -p "$CLUSTER_BIN_DIR"
# One build at a time per cache (CI, a fixture and `make cluster-up` may race).
exec 8>"$CLUSTER_BIN_DIR/.lock"
flock 8
rm -rf "$CLUSTER_BIN_DIR"/.build.* "$CLUSTER_BIN_DIR"/.install.*  # left by an interrupted build

# up_to_date NAME VERSION: the binary exists and was built for VERSION.
up_to_date() {
  [[ -x $CLUSTER_BIN_DIR/$1 && -f $CLUSTER_BIN_DIR/.$1.version ]] &&
    [[ $(cat "$CLUSTER_BIN_DIR/.$1.version") == "$2" ]]
}
stamp() { printf '%s\n' "$2" >"$CLUSTER_BIN_DIR/.$1.version"; }
install_from() { # DIR NAME VERSION...: move built binaries into the cache, stamp them
  local dir=$1 version=$2; shift 2
  for b in "$@"; do
    mv -f "$dir/$b" "$CLUSTER_BIN_DIR/$b"
    stamp "$b" "$version"
  done
}
timed() { # LABEL CMD...: run, report the seconds it took
  local label=$1 t0=$SECONDS; shift
  log "building $label ..."
  "$@"
  log "built $label in $((SECONDS - t0))s"
}

# --- Kubernetes and etcd, one `go build` so the shared packages compile once ---
mod_version() { (cd "$HERE" && go list -m -f '{{.Version}}' "$1"); }
K8S_STAMP="$K8S_VERSION etcd-$ETCD_VERSION"
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
need_k8s=0
for b in "${k8s_bins[@]}"; do up_to_date "$b" "$K8S_STAMP" || need_k8s=1; done
if ((need_k8s)); then
  got=$(mod_version k8s.io/kubernetes)
  [[ $got == "$K8S_VERSION" ]] || { log "go.mod has k8s.io/kubernetes $got, env.sh says $K8S_VERSION"; exit 1; }
  got=$(mod_version go.etcd.io/etcd/server/v3)
  [[ $got == "$ETCD_VERSION" ]] || { log "go.mod has etcd $got, env.sh says $ETCD_VERSION"; exit 1; }
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  build_date=$(cd "$HERE" && go list -m -f '{{.Time}}' k8s.io/kubernetes | sed -E 's/ .*//')
  ld=(-s -w)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=(-X "$pkg.gitVersion=$K8S_VERSION" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=${build_date:-1970-01-01}T00:00:00Z")
  done
  tmp=$(mktemp -d "$CLUSTER_BIN_DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # shellcheck disable=SC2016 # $1 and $@ belong to the inner shell
  timed "kubernetes $K8S_VERSION + etcd $ETCD_VERSION (${k8s_bins[*]})" \
    bash -c 'cd "$1" && shift && exec go build "$@"' _ "$HERE" "${PFLAG[@]}" -ldflags "${ld[*]}" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ./cmd/etcd
  install_from "$tmp" "$K8S_STAMP" "${k8s_bins[@]}"
fi

# --- the real node (node.sh): kubelet and kube-proxy, same module and version ---
node_bins=(kubelet kube-proxy)
need_node=0
for b in "${node_bins[@]}"; do up_to_date "$b" "$K8S_STAMP" || need_node=1; done
if ((need_node)); then
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld=(-s -w)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=(-X "$pkg.gitVersion=$K8S_VERSION" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean")
  done
  tmp_node=$(mktemp -d "$CLUSTER_BIN_DIR/.build.XXXXXX")
  # shellcheck disable=SC2016 # $1 and $@ belong to the inner shell
  timed "kubelet + kube-proxy $K8S_VERSION" \
    bash -c 'cd "$1" && shift && exec go build "$@"' _ "$HERE" "${PFLAG[@]}" -ldflags "${ld[*]}" \
    -o "$tmp_node/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  install_from "$tmp_node" "$K8S_STAMP" "${node_bins[@]}"
  rm -rf "$tmp_node"
fi

# --- kwok, kwokctl and helm: `go install pkg@version`, each with its own go.mod ---
go_install() { # VERSION LDFLAGS PKG...
  local version=$1 ldflags=$2; shift 2
  local gobin; gobin=$(mktemp -d "$CLUSTER_BIN_DIR/.install.XXXXXX")
  GOBIN=$gobin go install "${PFLAG[@]}" -ldflags "$ldflags" "$@"
  local names=()
  for p in "$@"; do p=${p%@*}; names+=("${p##*/}"); done
  install_from "$gobin" "$version" "${names[@]}"
  rmdir "$gobin"
}
if ! up_to_date kwok "$KWOK_VERSION" || ! up_to_date kwokctl "$KWOK_VERSION"; then
  # KubeVersion: the Kubernetes version kwokctl assumes for the binaries it is given.
  timed "kwok/kwokctl $KWOK_VERSION" go_install "$KWOK_VERSION" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi
if ! up_to_date helm "$HELM_VERSION"; then
  timed "helm $HELM_VERSION" go_install "$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

# --- Karpenter (kwok provider) and its CRDs: kit/cluster/karpenter.sh ---
# shellcheck source=karpenter.sh
. "$HERE/karpenter.sh"
karpenter_build

log "binaries up to date in $CLUSTER_BIN_DIR"
echo "$CLUSTER_BIN_DIR"
