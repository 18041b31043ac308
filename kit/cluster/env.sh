# shellcheck shell=bash
# shellcheck disable=SC2034 # variables for the scripts that source this file
# Versions and paths of the test cluster, sourced by build.sh, up.sh and down.sh.
# K8S_VERSION and ETCD_VERSION must match go.mod (build.sh checks).
K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.22.0

SIESTA_CACHE=${SIESTA_CACHE:-$HOME/.cache/siesta}
SIESTA_CLUSTER_NAME=${SIESTA_CLUSTER_NAME:-siesta}
CLUSTER_BIN_DIR=${SIESTA_CLUSTER_BIN_DIR:-$SIESTA_CACHE/cluster/$K8S_VERSION/bin}
# kwokctl keeps each cluster's state (configs, pids, logs, kubeconfig) here.
KWOK_WORKDIR=${KWOK_WORKDIR:-$SIESTA_CACHE/kwok}
export KWOK_WORKDIR
CLUSTER_DIR=$KWOK_WORKDIR/clusters/$SIESTA_CLUSTER_NAME
CLUSTER_KUBECONFIG=$CLUSTER_DIR/kubeconfig.yaml

log() { printf '[cluster] %s\n' "$*" >&2; }
