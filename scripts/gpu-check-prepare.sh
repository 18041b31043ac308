#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that has no network: run it here
# (with network to PyPI), then carry .cache/gpu-check (at most 64 MiB) with the working tree.
#
#   llama_cpp_python-<version>.tar.gz   the sdist siesta-server pins, trimmed: without its
#                                       .git folders, vocabulary test models, docs and the
#                                       backends no NVIDIA machine builds (73 MiB -> ~20)
#   wheels/                             siesta-server's dependencies and the build backend,
#                                       as wheels for CPython $GPU_CHECK_PYTHON (3.12) on x86-64
#
# Cached under ${SIESTA_CACHE:-~/.cache/siesta}/gpu-check and copied into .cache/gpu-check
# (ignored by git). Env: PYTHON (default .venv/bin/python), GPU_CHECK_PYTHON (default 3.12).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TARGET_PYTHON=${GPU_CHECK_PYTHON:-3.12}
CACHE=${SIESTA_CACHE:-$HOME/.cache/siesta}/gpu-check
OUT=$ROOT/.cache/gpu-check
LIMIT_MIB=64

log() { printf '[gpu-check-prepare] %s\n' "$*" >&2; }

version=$(sed -n 's/^ *"llama-cpp-python==\([^"]*\)",$/\1/p' server/pyproject.toml)
[[ -n $version ]] || { log "no llama-cpp-python pin in server/pyproject.toml"; exit 1; }
mkdir -p "$CACHE/sdist" "$CACHE/wheels"

trimmed=$CACHE/llama_cpp_python-$version.tar.gz
if [[ ! -f $trimmed ]]; then
  log "downloading and trimming the llama-cpp-python $version sdist"
  "$PYTHON" -m pip download -q --no-binary :all: --no-deps -d "$CACHE/sdist" \
    "llama-cpp-python==$version"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$CACHE/sdist/llama_cpp_python-$version.tar.gz" -C "$work"
  top=$work/llama_cpp_python-$version
  llama=$top/vendor/llama.cpp
  # Nothing the CUDA build of the binding or of llama-server reads.
  rm -rf "$top/.git" "$llama/.git" "$llama/models" "$llama/docs" "$llama/benches" \
    "$llama/tests" "$llama/examples" "$llama/gguf-py" "$llama/media" "$llama/ci" \
    "$top/docs" "$top/examples" "$top/tests" "$top/docker"
  for backend in metal hexagon sycl vulkan opencl cann musa zdnn webgpu kompute rpc blas; do
    rm -rf "$llama/ggml/src/ggml-$backend"
  done
  # The examples folder is added by CMake only with LLAMA_BUILD_EXAMPLES; keep its CMakeLists
  # from breaking a configure that asks for it.
  mkdir -p "$llama/examples" && : >"$llama/examples/CMakeLists.txt"
  mkdir -p "$llama/tests" && : >"$llama/tests/CMakeLists.txt"
  tar -C "$work" -czf "$trimmed.part" "llama_cpp_python-$version"
  mv -f "$trimmed.part" "$trimmed"
fi

log "wheels for CPython $TARGET_PYTHON (x86-64 Linux)"
constraints=$CACHE/constraints.txt
"$PYTHON" -m pip freeze --exclude-editable | grep -v -i '^llama[-_]cpp[-_]python==' >"$constraints"
"$PYTHON" -m pip download -q --dest "$CACHE/wheels" --only-binary=:all: \
  --python-version "$TARGET_PYTHON" --implementation cp --abi "cp${TARGET_PYTHON/./}" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
  -c "$constraints" \
  numpy 'diskcache>=5.6.1' 'jinja2>=3.1' 'typing-extensions>=4.5' \
  'starlette>=0.40' 'uvicorn>=0.30' 'httptools>=0.6' 'pydantic>=2.7,<3' \
  'prometheus-client>=0.20' 'scikit-build-core[pyproject]>=0.9.2' 'setuptools>=69' wheel pip

rm -rf "$OUT"
mkdir -p "$OUT/wheels"
cp -f "$trimmed" "$OUT/"
cp -f "$CACHE"/wheels/*.whl "$OUT/wheels/"
size_mib=$(du -sm "$OUT" | cut -f1)
log "ready: $OUT, ${size_mib} MiB ($(find "$OUT/wheels" -name '*.whl' | wc -l) wheels)"
if ((size_mib > LIMIT_MIB)); then
  log "more than $LIMIT_MIB MiB: the device machine takes at most $LIMIT_MIB MiB of carried files"
  exit 1
fi
