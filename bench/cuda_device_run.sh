#!/usr/bin/env bash
# One device call: GPU tests, gemforge bench on the synthetic shapes, and the
# Hugging Face transformers peer. Binaries are built on the workstation
# (GEMFORGE_NATIVE=OFF, so they run on any x86-64) and carried in .device/:
#   cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEMFORGE_NATIVE=OFF
#   cmake --build build-dev --target gemforge decoder_cuda_test
#   cp build-dev/gemforge build-dev/libgemforge_cuda.so build-dev/tests/decoder_cuda_test .device/bin/
#   (the CUDA backend is the plugin libgemforge_cuda.so, loaded from next to the binary or $GEMFORGE_CUDA_LIBRARY)
#   (plus .device/lib: the non-CUDA shared libraries `ldd build-dev/gemforge` lists that the device image lacks:
#    simdjson, lzma, cpp-httplib, ssl, crypto, z, brotli; .device/fixtures/hf-tiny: the Gemma 1-3 fixtures)
# Usage: [SKIP_TESTS=1] bench/cuda_device_run.sh "gemma3-1b gemma-7b gemma2-9b gemma3-12b" [hf models]
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
GF_LIBS=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}  # for our binaries only (not python)
MODELS=${1:-"gemma3-1b gemma-7b gemma2-9b gemma3-12b"}
HF_MODELS=${2:-$MODELS}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"
[ -z "${SKIP_TESTS:-}" ] && echo "== GPU tests" && LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_FIXTURES_DIR=$PWD/.device/fixtures .device/bin/decoder_cuda_test 2>&1 | tee "$OUT/tests.log" | grep -E "^\[ (gemma|synth)|OK|FAILED|PASSED|Failure|error|Expected|Which|actual" | head -80
for m in $MODELS; do
  echo "== gemforge bench $m"
  LD_LIBRARY_PATH=$GF_LIBS .device/bin/gemforge bench --backend cuda --synthetic "$m" -p 2048 -n 128 -r 2 --batch 1,8,32,64,128 \
    --batch-prompt 32 --batch-gen 32 --json "$OUT/gf_$m.json" 2>&1 | tee -a "$OUT/bench.log" | grep -E "^\||device|error"
done
for m in $HF_MODELS; do
  echo "== transformers $m"
  timeout 300 python3 bench/hf_generate_bench.py --model "$m" --batch 1,32 --prompt 32 --gen 32 --json "$OUT/hf_$m.json" 2>&1 \
    | tee -a "$OUT/hf.log" | grep -E "^\||parameters|Error|error" | head -5
done
