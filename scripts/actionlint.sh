#!/usr/bin/env bash
# Lints .github/workflows with actionlint, built once from its Go module into
# $SIESTA_CACHE/tools/actionlint-<version>/ (`make lint` runs this; setup.sh builds it).
#   scripts/actionlint.sh            lint the workflows
#   scripts/actionlint.sh --install  only build it (no-op when present)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ACTIONLINT_VERSION=v1.7.12
SIESTA_CACHE=${SIESTA_CACHE:-$HOME/.cache/siesta}
BIN_DIR=$SIESTA_CACHE/tools/actionlint-$ACTIONLINT_VERSION
ACTIONLINT=$BIN_DIR/actionlint

if [[ ! -x $ACTIONLINT ]]; then
  echo "[actionlint] building actionlint $ACTIONLINT_VERSION (once)" >&2
  mkdir -p "$BIN_DIR"
  tmp=$(mktemp -d "$BIN_DIR/.install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOBIN=$tmp go install -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  mv -f "$tmp/actionlint" "$ACTIONLINT"
fi
[[ ${1:-} == --install ]] && exit 0
cd "$ROOT"
exec "$ACTIONLINT" -no-color
