#!/usr/bin/env bash
# `make images`: builds Siesta's images on this machine with buildah (no daemon, no registry):
#
#   localhost/siesta-base:<key>     Debian bookworm + python3, made by mmdebstrap from Debian
#                                   packages (stands in for python:3.1x-slim, which cannot be
#                                   pulled here)
#   localhost/siesta:<hash>         operator/Dockerfile (operator + gateway)
#   localhost/siesta-server:<hash>  server/Dockerfile, CPU variant
#   localhost/siesta-server:<hash>-cuda  the same Dockerfile, CUDA variant (VARIANT=cuda only)
#   localhost/pause:<key>           the pod sandbox image of the test node's containerd
#                                   (kit/cluster/cmd/pause, a static Go binary)
#
# Each tag is a hash of what goes into the image (its Dockerfile, sources, the wheels, the
# base), so an unchanged tree is not rebuilt: a warm run takes seconds. The Python images
# are built from the wheels the virtualenv already uses (`pip wheel` reuses pip's cache:
# llama-cpp-python is not compiled a second time), offline. Each image is also saved as an
# archive under $SIESTA_CACHE/images/ (for containerd, and to survive a wiped podman store).
# The last run's tags are written to $SIESTA_CACHE/images/images.env (sourced by tests and
# the demo); its path is the last line on stdout.
#
# VARIANT=cuda builds the CUDA server image as well (server/Dockerfile with VARIANT=cuda):
# llama-cpp-python compiled inside the build from its sdist with the CUDA 13 toolkit from
# PyPI wheels, for CUDA_ARCHITECTURES (default "75;86;89": T4, A10G, L4; add 90 for H100).
# Its compile is long on 2 cores (see docs/server.md), so it is not part of `make test` or
# .ci/run; run it under `nice -n 19`. The wheels it needs are fetched here with pip (from
# its cache when it has them) and the build itself runs with PIP_OFFLINE=1.
#
# Env: SIESTA_CACHE (default ~/.cache/siesta), PYTHON (default .venv/bin/python), VARIANT
# (cpu or cuda), CUDA_ARCHITECTURES, BUILD_JOBS (parallel compile jobs; default 2).
set -euo pipefail
shopt -s inherit_errexit # a failed step inside $(...) fails the build too
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIESTA_CACHE=${SIESTA_CACHE:-$HOME/.cache/siesta}
IMAGES_DIR=$SIESTA_CACHE/images
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DEBIAN_SUITE=bookworm
# What the base image holds; part of its cache key.
BASE_PACKAGES=passwd,python3,python3-venv,python3-pip,libgomp1,ca-certificates
BASE_RECIPE_VERSION=1
VARIANT=${VARIANT:-cpu}
CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-75;86;89}
BUILD_JOBS=${BUILD_JOBS:-2}

log() { printf '[images] %s\n' "$*" >&2; }

# Rootful podman/buildah on this kind of host: runc (crun rejects the mixed cgroup v1/v2
# mounts), the cgroupfs manager (no systemd), and resource limits no higher than this
# shell's (no CAP_SYS_RESOURCE to raise them).
container_flags() {
  printf '%s\n' --runtime runc --cgroup-manager cgroupfs \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096
}
mapfile -t CFLAGS < <(container_flags)

require_tools() {
  local missing=()
  for tool in buildah podman mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if ((${#missing[@]})); then
    log "missing ${missing[*]}: run scripts/setup.sh (installs them)"
    exit 1
  fi
}

sha() { sha256sum | cut -c1-16; }

# tree_hash DIR...: the content of every file under DIR (names and bytes), as a short hash.
tree_hash() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha
}

image_exists() { podman image exists "$1" 2>/dev/null; }

# restore NAME TAG: the image is in podman's store, from its archive if need be.
restore() {
  local ref=$1 archive=$2
  image_exists "$ref" && return 0
  [[ -f $archive ]] || return 1
  log "loading $ref from $archive"
  podman load -q -i "$archive" >/dev/null && image_exists "$ref"
}

# save REF ARCHIVE: the archive of REF; older builds of the same image and variant go (store
# and cache): a -cuda build never removes the CPU one, nor the other way round.
save() {
  local ref=$1 archive=$2 tmp="$2.tmp" name old suffix=""
  rm -f "$tmp"
  podman save -q --format docker-archive -o "$tmp" "$ref"
  mv -f "$tmp" "$archive"
  name=${ref#localhost/}
  name=${name%%:*}
  [[ $ref == *-cuda ]] && suffix=-cuda
  find "$IMAGES_DIR" -maxdepth 1 -regextype posix-extended \
    -regex ".*/$name-[0-9a-f]{16}$suffix\.tar" ! -path "$archive" -delete
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' "localhost/$name"); do
    [[ $old =~ :[0-9a-f]{16}$suffix$ && $old != "$ref" ]] && podman rmi -f "$old" >/dev/null 2>&1
  done
  return 0
}

# --- the Debian base (mmdebstrap) ---------------------------------------------------------
base_image() {
  local key ref archive rootfs
  key=$(printf '%s\n' "$DEBIAN_SUITE" "$BASE_PACKAGES" "$BASE_RECIPE_VERSION" | sha)
  ref=localhost/siesta-base:$key
  archive=$IMAGES_DIR/siesta-base-$key.tar
  if ! restore "$ref" "$archive"; then
    log "making the Debian $DEBIAN_SUITE base with mmdebstrap (once; cached as $archive)"
    rootfs=$(mktemp "$IMAGES_DIR/.rootfs.XXXXXX.tar")
    # Debian marks its Python "externally managed" (PEP 668); python:*-slim images, which
    # this base stands in for, let pip install into it, so the marker goes.
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
      --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
      "$DEBIAN_SUITE" "$rootfs" \
      "deb http://deb.debian.org/debian $DEBIAN_SUITE main" \
      "deb http://deb.debian.org/debian $DEBIAN_SUITE-updates main" \
      "deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main" >&2
    podman import -q --change 'CMD ["/bin/bash"]' "$rootfs" "$ref" >/dev/null
    rm -f "$rootfs"
    save "$ref" "$archive"
  fi
  BASE_IMAGE=$ref
}

# --- the Python images ------------------------------------------------------------------
# wheels_for DIST DEST: every wheel DIST needs, at the versions the virtualenv has (so the
# image runs what the tests ran), from pip's cache where it has them (llama-cpp-python is
# not compiled again), plus setuptools to build DIST itself inside the image.
wheels_for() {
  local dist=$1 dest=$2
  rm -rf "$dest"
  mkdir -p "$dest"
  "$PYTHON" -m pip freeze --exclude-editable >"$dest.constraints"
  "$PYTHON" -m pip wheel -q --wheel-dir "$dest" -c "$dest.constraints" "./$dist" \
    'setuptools>=69' wheel >&2
  # DIST itself is built from its sources inside the image.
  local project
  project=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dist/pyproject.toml" | tr - _)
  rm -f "$dest/$project"-[0-9]*.whl
}

# dockerfile_arg NAME FILE: the default value of ARG NAME in a Dockerfile.
dockerfile_arg() { sed -n "s/^ARG $1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$2" | head -1; }

# cuda_wheels DEST: what the CUDA build compiles from, offline: llama-cpp-python's sdist (in
# place of the CPU wheel), its build backend, the CUDA toolkit and runtime wheels.
cuda_wheels() {
  local dest=$1 llama toolkit runtime
  llama=$("$PYTHON" -m pip freeze | grep -i '^llama[-_]cpp[-_]python==')
  rm -f "$dest"/llama_cpp_python-*.whl
  read -ra toolkit <<<"$(dockerfile_arg CUDA_TOOLKIT server/Dockerfile)"
  read -ra runtime <<<"$(dockerfile_arg CUDA_RUNTIME server/Dockerfile)"
  "$PYTHON" -m pip download -q --dest "$dest" --no-binary llama-cpp-python --no-deps "$llama" >&2
  "$PYTHON" -m pip download -q --dest "$dest" 'scikit-build-core[pyproject]>=0.9.2' \
    "${toolkit[@]}" "${runtime[@]}" >&2
}

# build_image NAME DIST [BUILD_ARG...]: localhost/NAME:<hash>[-cuda] from DIST/Dockerfile.
# The hash covers the Dockerfile, DIST's sources, the build arguments, the base image and
# the virtualenv's package versions, and is checked before anything is built. A build
# argument VARIANT=cuda gives the -cuda tag and the CUDA wheels.
build_image() {
  local name=$1 dist=$2; shift 2
  local suffix=""
  [[ " $* " == *" VARIANT=cuda "* ]] && suffix=-cuda
  local key ref archive wheels=$IMAGES_DIR/wheels/$dist
  key=$(
    {
      printf '%s\n' "$BASE_IMAGE" "$@"
      tree_hash "$dist/src"
      sha256sum "$dist/Dockerfile" "$dist/pyproject.toml"
      "$PYTHON" -m pip freeze --exclude-editable
    } | sha
  )
  ref=localhost/$name:$key$suffix
  archive=$IMAGES_DIR/$name-$key$suffix.tar
  if ! restore "$ref" "$archive"; then
    log "building $ref"
    wheels=$wheels$suffix
    wheels_for "$dist" "$wheels"
    [[ -z $suffix ]] || cuda_wheels "$wheels"
    local build_args=()
    for arg in "$@"; do build_args+=(--build-arg "$arg"); done
    buildah build -q "${CFLAGS[@]}" --network host --layers=false \
      --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg PIP_OFFLINE=1 "${build_args[@]}" \
      --build-context "wheels=$wheels" -f "$dist/Dockerfile" -t "$ref" "$dist" >&2
    save "$ref" "$archive"
    rm -rf "$wheels" "$wheels.constraints"
  fi
  podman tag "$ref" "localhost/$name:dev$suffix"
  printf '%s\n' "$ref"
}

# --- the pause image -----------------------------------------------------------------------
pause_image() {
  local key ref archive src=$ROOT/kit/cluster/cmd/pause
  key=$(tree_hash "$src")
  ref=localhost/pause:$key
  archive=$IMAGES_DIR/pause-$key.tar
  if ! restore "$ref" "$archive"; then
    log "building $ref"
    local work container
    work=$(mktemp -d "$IMAGES_DIR/.pause.XXXXXX")
    (cd "$ROOT/kit/cluster" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/pause" ./cmd/pause)
    container=$(buildah from scratch)
    buildah copy -q "$container" "$work/pause" /pause >/dev/null
    buildah config --entrypoint '["/pause"]' --user 65535:65535 "$container"
    buildah commit -q "$container" "$ref" >/dev/null
    buildah rm "$container" >/dev/null
    rm -rf "$work"
    save "$ref" "$archive"
  fi
  PAUSE_IMAGE=$ref
}

write_env() {
  {
    printf 'SIESTA_BASE_IMAGE=%s\n' "$BASE_IMAGE"
    printf 'SIESTA_IMAGE=%s\n' "$SIESTA_IMAGE"
    printf 'SIESTA_SERVER_IMAGE=%s\n' "$SERVER_IMAGE"
    printf 'SIESTA_PAUSE_IMAGE=%s\n' "$PAUSE_IMAGE"
    local ref name
    for ref in "$SIESTA_IMAGE" "$SERVER_IMAGE" "$PAUSE_IMAGE"; do
      name=${ref#localhost/}
      printf 'SIESTA_ARCHIVE_%s=%s\n' "$(tr 'a-z-' 'A-Z_' <<<"${name%%:*}")" \
        "$IMAGES_DIR/${name%%:*}-${name#*:}.tar"
    done
  } >"$IMAGES_DIR/images.env"
}

# cuda_image: the CUDA server image, built without holding the cache's lock (its compile
# takes long; tests and the demo go on meanwhile), one CUDA build at a time; then its tag is
# added to images.env under the lock.
cuda_image() {
  flock -u 7
  exec 8>"$IMAGES_DIR/.lock-cuda"
  flock 8
  SERVER_CUDA_IMAGE=$(build_image siesta-server server VARIANT=cuda \
    "CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES" "BUILD_JOBS=$BUILD_JOBS" \
    "BUILD_PACKAGES=build-essential cmake ninja-build")
  flock -u 8
  flock 7
  local env_file=$IMAGES_DIR/images.env
  { grep -v '^SIESTA_SERVER_CUDA_IMAGE=' "$env_file" || true; } >"$env_file.tmp"
  printf 'SIESTA_SERVER_CUDA_IMAGE=%s\n' "$SERVER_CUDA_IMAGE" >>"$env_file.tmp"
  mv -f "$env_file.tmp" "$env_file"
}

main() {
  require_tools
  case $VARIANT in
    cpu | cuda) ;;
    *) log "VARIANT is cpu or cuda, not $VARIANT"; exit 2 ;;
  esac
  mkdir -p "$IMAGES_DIR"
  exec 7>"$IMAGES_DIR/.lock"
  flock 7 # one build at a time per cache
  local t0=$SECONDS
  base_image
  SIESTA_IMAGE=$(build_image siesta operator)
  SERVER_IMAGE=$(build_image siesta-server server VARIANT=cpu BUILD_PACKAGES=)
  pause_image
  write_env
  local built=("$SIESTA_IMAGE" "$SERVER_IMAGE" "$PAUSE_IMAGE")
  if [[ $VARIANT == cuda ]]; then
    cuda_image
    built+=("$SERVER_CUDA_IMAGE")
  fi
  log "images ready in $((SECONDS - t0))s:"
  local ref
  for ref in "${built[@]}"; do
    # A build that ran meanwhile (a CUDA compile takes hours) may have replaced an image.
    log "  $ref $(podman image inspect --format '{{.Size}}' "$ref" 2>/dev/null | numfmt --to=iec \
      || echo '(replaced by a newer build meanwhile)')"
  done
  echo "$IMAGES_DIR/images.env"
}

main "$@"
