#!/usr/bin/env bash
# One prepared check that Siesta's model server computes on an NVIDIA GPU, for a machine with
# a GPU, nvcc, CMake and Python 3.12 but no network, from this working tree plus
# .cache/gpu-check (made by scripts/gpu-check-prepare.sh on a machine with network; 32 MiB).
# In under 8 minutes on 16 cores it:
#
#   1. builds llama-cpp-python with CUDA for this card (its compute capability only) from
#      the trimmed sdist, and siesta-server on it, in a fresh venv from the carried wheels;
#   2. builds llama.cpp's native llama-server from the same vendored sources (the baseline);
#   3. writes a Llama-2-7B-shaped Q4_K GGUF with random weights (scripts/gpu_check.py);
#   4. prints siesta-server vs llama-server tokens/s at concurrency 1 and 8 (ratios), their
#      load times, siesta-server's memory check and GPU check lines;
#   5. prints the refusal of `siesta-server --require-gpu` with CUDA_VISIBLE_DEVICES= .
#
# Env: GPU_CHECK_WORK (default /tmp/siesta-gpu-check), PYTHON (default python3.12),
# CUDA_ARCHITECTURES (default: this card's, from nvidia-smi), JOBS (default: all cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=$ROOT/.cache/gpu-check
WORK=${GPU_CHECK_WORK:-/tmp/siesta-gpu-check}
PYTHON=${PYTHON:-python3.12}
JOBS=${JOBS:-$(nproc)}
T0=$SECONDS

step() { printf '\n[gpu-check %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { printf '[gpu-check] %s\n' "$*" >&2; exit 1; }

[[ -d $KIT/wheels ]] || fail "$KIT is missing: run scripts/gpu-check-prepare.sh where there is network, and carry .cache/gpu-check"
sdist=$(find "$KIT" -maxdepth 1 -name 'llama_cpp_python-*.tar.gz' | head -1)
[[ -n $sdist ]] || fail "no llama_cpp_python sdist in $KIT"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver here"
if ! command -v nvcc >/dev/null; then
  for dir in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [[ -x $dir/nvcc ]] && PATH=$dir:$PATH && break; done
fi
command -v nvcc >/dev/null || fail "nvcc not found (PATH, /usr/local/cuda/bin)"
command -v cmake >/dev/null || fail "cmake not found"

step "the machine"
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version,compute_cap --format=csv
nvcc --version | tail -2
"$PYTHON" --version
arch=${CUDA_ARCHITECTURES:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')}
echo "building for CUDA architecture $arch with $JOBS jobs"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

rm -rf "$WORK"
mkdir -p "$WORK/logs"
tar -xzf "$sdist" -C "$WORK"
src=$(find "$WORK" -maxdepth 1 -type d -name 'llama_cpp_python-*' | head -1)

step "building llama.cpp's llama-server (background) and llama-cpp-python with CUDA"
(
  cmake -S "$src/vendor/llama.cpp" -B "$WORK/llama-server-build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF &&
    cmake --build "$WORK/llama-server-build" --target llama-server --parallel "$((JOBS / 2 + 1))"
) >"$WORK/logs/llama-server-build.log" 2>&1 &
native_pid=$!

# pip from the carried wheel: a Python without ensurepip (Debian without python3.12-venv's
# wheels) still gets a venv.
"$PYTHON" -m venv --without-pip "$WORK/venv"
pip_wheel=$(find "$KIT/wheels" -name 'pip-*.whl' | head -1)
"$WORK/venv/bin/python" "$pip_wheel/pip" install -q --no-index "$pip_wheel"
pip=("$WORK/venv/bin/python" -m pip install -q --no-index --find-links "$KIT/wheels")
"${pip[@]}" numpy diskcache jinja2 typing-extensions starlette uvicorn httptools pydantic \
  prometheus-client scikit-build-core setuptools wheel
build_started=$SECONDS
# The same CMake flags as the CUDA image (server/Dockerfile), for this card only.
CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DGGML_CUDA_NO_VMM=ON -DCMAKE_CUDA_ARCHITECTURES=$arch" \
  CMAKE_BUILD_PARALLEL_LEVEL=$((JOBS / 2 + 1)) \
  "${pip[@]}" --no-build-isolation "$src" >"$WORK/logs/llama-cpp-python-build.log" 2>&1 ||
  { tail -40 "$WORK/logs/llama-cpp-python-build.log"; fail "llama-cpp-python did not build"; }
echo "llama-cpp-python built in $((SECONDS - build_started)) s"
"${pip[@]}" --no-deps --no-build-isolation "$ROOT/server"
wait "$native_pid" || { tail -40 "$WORK/logs/llama-server-build.log"; fail "llama-server did not build"; }
llama_server=$WORK/llama-server-build/bin/llama-server
echo "llama-server built ($((SECONDS - build_started)) s after the start of both builds)"
"$WORK/venv/bin/python" -c 'import llama_cpp; print("llama_supports_gpu_offload:", llama_cpp.llama_supports_gpu_offload())'

step "writing a Llama-2-7B-shaped Q4_K GGUF (random weights)"
model=$WORK/llama-2-7b-shaped.Q4_K.gguf
"$WORK/venv/bin/python" "$ROOT/scripts/gpu_check.py" write-model "$model"

step "siesta-server vs llama-server"
"$WORK/venv/bin/python" "$ROOT/scripts/gpu_check.py" bench --model "$model" \
  --siesta-server "$WORK/venv/bin/siesta-server" --llama-server "$llama_server" \
  --logs "$WORK/logs"

step "the refusal with no device visible"
"$WORK/venv/bin/python" "$ROOT/scripts/gpu_check.py" refusal --model "$model" \
  --siesta-server "$WORK/venv/bin/siesta-server" --logs "$WORK/logs"

step "done in $((SECONDS - T0)) s (logs: $WORK/logs)"
if [[ -n ${OUT:-} && -d ${OUT:-} ]]; then cp "$WORK"/logs/*.log "$OUT/" 2>/dev/null || true; fi
