#!/usr/bin/env bash
# One device call to check a refactor that must not change behaviour or speed:
# the GPU tests with the new binaries (and with CUDA graphs, fused steps and
# PDL each switched off, and with the profiler on), then `gemforge bench` of the
# old binaries (.device/bin-before) and the new ones (.device/bin) on the same
# shapes, alternated, so both see the same GPU. Binaries are built here as
# bench/cuda_device_run.sh says.
# Usage (device, repo root): bench/before_after_device.sh "gemma3-1b gemma-7b" [extra command]
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export GEMFORGE_FIXTURES_DIR=$PWD/.device/fixtures GEMFORGE_REFERENCES_DIR=$PWD/tests/references
MODELS=${1:-"gemma3-1b gemma-7b"}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== GPU tests (new binaries)"
.device/bin/decoder_cuda_test 2>&1 | tee "$OUT/cuda_tests.log" | grep -E "^\[ |FAILED|PASSED|Failure|Expected|Which|actual" | head -80
for sw in GEMFORGE_CUDA_GRAPHS=0 GEMFORGE_CUDA_UNFUSED=1 GEMFORGE_CUDA_PDL=0; do
  echo "== GPU tests with $sw"
  env "$sw" .device/bin/decoder_cuda_test 2>&1 | grep -E "FAILED|PASSED|Failure" | head -10
done
echo "== profiler (new)"
GEMFORGE_CUDA_PROFILE=1 .device/bin/gemforge bench --backend cuda --synthetic gemma3-1b -p 128 -n 16 -r 1 2>&1 | tail -25
for m in $MODELS; do
  for round in 1 2; do
    for which in bin-before bin; do
      echo "== $which $m (round $round)"
      .device/$which/gemforge bench --backend cuda --synthetic "$m" -p 2048 -n 128 -r 2 --batch 1,64 --batch-prompt 32 --batch-gen 32 2>&1 \
        | grep -E "^\|" | tail -4
    done
  done
done
if [ -n "${2:-}" ]; then echo "== $2"; bash -c "$2"; fi
