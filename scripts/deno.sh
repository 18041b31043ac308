#!/usr/bin/env bash
# Runs Deno with the given arguments, installing it first when needed: the version pinned in
# scripts/deno/package-lock.json (npm registry, integrity-checked by `npm ci`), cached in
# ~/.cache/siesta/deno-VERSION. Only the TypeScript client's and the examples' tests and
# `make lint` call this, so a plain `make setup` never downloads Deno.
#   scripts/deno.sh test ...      scripts/deno.sh --version
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's/.*"deno": "\([0-9.]*\)".*/\1/p' "$here/deno/package.json")"
root="${SIESTA_CACHE:-$HOME/.cache/siesta}/deno-$version"
case "$(uname -m)" in
  x86_64) package=linux-x64-glibc ;;
  aarch64 | arm64) package=linux-arm64-glibc ;;
  *) echo "deno.sh: no Deno package for $(uname -m)" >&2; exit 1 ;;
esac
binary="$root/node_modules/@deno/$package/deno"

if [ ! -x "$binary" ]; then
  command -v npm >/dev/null || { echo "deno.sh: npm (Node.js >= 20) is needed to install Deno" >&2; exit 1; }
  echo "==> installing Deno $version from the npm registry into $root" >&2
  mkdir -p "$(dirname "$root")"
  staging="$(mktemp -d "$root.partial.XXXXXX")"
  cp "$here/deno/package.json" "$here/deno/package-lock.json" "$staging/"
  # --ignore-scripts: the package's postinstall only links the binary we call directly.
  npm ci --prefix "$staging" --no-audit --no-fund --ignore-scripts --loglevel=error >&2
  "$staging/node_modules/@deno/$package/deno" --version >/dev/null
  # Only a complete install is moved into place; a concurrent one that won is kept.
  mv -T "$staging" "$root" 2>/dev/null || rm -rf "$staging"
fi

# Deno's own downloads (esbuild for `deno bundle`, from the npm registry) are cached next to
# the binary; they trust the system's CA store too, as npm and pip do.
export DENO_DIR="$root/cache" DENO_NO_UPDATE_CHECK=1 DENO_TLS_CA_STORE=system,mozilla
exec "$binary" "$@"
