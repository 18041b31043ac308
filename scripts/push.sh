#!/usr/bin/env bash
# `make push REGISTRY=HOST[:PORT][/PATH]`: until a release exists, the path that works today.
# Pushes what `make images` built on this machine, tagged with the chart's version X.Y.Z, and
# the chart itself as an OCI artifact:
#
#   REGISTRY/siesta:X.Y.Z               operator + gateway
#   REGISTRY/siesta-server:X.Y.Z        model server, CPU
#   REGISTRY/siesta-server:X.Y.Z-cuda   model server, CUDA (when `make images VARIANT=cuda` built it)
#   oci://REGISTRY/charts/siesta        the chart, version X.Y.Z
#
# Log in first (ECR: `aws ecr get-login-password | podman login --username AWS
# --password-stdin REGISTRY` and the same with `helm registry login`). Then install with
#   helm install siesta oci://REGISTRY/charts/siesta --version X.Y.Z \
#     --set image.repository=REGISTRY/siesta \
#     --set operator.serverImage=REGISTRY/siesta-server:X.Y.Z \
#     --set operator.serverCudaImage=REGISTRY/siesta-server:X.Y.Z-cuda
#
# Env: REGISTRY (required), PLAIN_HTTP=1 for a registry without TLS (a loopback test
# registry), IMAGES_ENV (default $SIESTA_CACHE/images/images.env, what make images wrote),
# HELM (default: the test cluster's helm,
# else helm on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY=${REGISTRY:?set REGISTRY=HOST[:PORT][/PATH], e.g. 123456789012.dkr.ecr.eu-central-1.amazonaws.com/siesta}
REGISTRY=${REGISTRY%/}
SIESTA_CACHE=${SIESTA_CACHE:-$HOME/.cache/siesta}
ENV_FILE=${IMAGES_ENV:-$SIESTA_CACHE/images/images.env}

log() { printf '[push] %s\n' "$*" >&2; }

[[ -f $ENV_FILE ]] || { log "no $ENV_FILE: run make images first"; exit 1; }
# shellcheck source=/dev/null
source "$ENV_FILE"
version=$(sed -n 's/^version: *//p' charts/siesta/Chart.yaml)
if [[ -z ${HELM:-} ]]; then
  HELM=$(bash -c 'source kit/cluster/env.sh >/dev/null 2>&1; echo "${CLUSTER_BIN_DIR:-}/helm"')
  [[ -x $HELM ]] || HELM=helm
fi
tls=(--tls-verify=true)
plain=()
if [[ ${PLAIN_HTTP:-0} == 1 ]]; then
  tls=(--tls-verify=false)
  plain=(--plain-http)
fi

push_image() {
  local source=$1 target=$2
  log "$source -> $target"
  podman push -q "${tls[@]}" "$source" "docker://$target"
}

push_image "$SIESTA_IMAGE" "$REGISTRY/siesta:$version"
push_image "$SIESTA_SERVER_IMAGE" "$REGISTRY/siesta-server:$version"
cuda=${SIESTA_SERVER_CUDA_IMAGE:-localhost/siesta-server:dev-cuda}
if podman image exists "$cuda"; then
  push_image "$cuda" "$REGISTRY/siesta-server:$version-cuda"
else
  log "no CUDA server image here (make images VARIANT=cuda): GPU models need one"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$HELM" package charts/siesta --destination "$work" >/dev/null
log "chart $version -> oci://$REGISTRY/charts"
"$HELM" push "${plain[@]}" "$work/siesta-$version.tgz" "oci://$REGISTRY/charts" >&2
echo "$REGISTRY $version"
