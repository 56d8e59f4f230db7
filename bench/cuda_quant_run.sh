#!/usr/bin/env bash
# GGUF block-quantized weights on the GPU (docs/BENCHMARKS.md, "Quantized GGUF on CUDA"), on the device machine.
# The files: random weights of the real shapes in llama.cpp's Q4_K_M mix and Q8_0 (bench/make_synthetic_gguf.py
# --dtype q4_k_m|q8_0), kept in /tmp/gguf while the machine stays warm, so that a second call finds them.
#   STAGE=ours: GPU tests (quant_cuda_test on tiny Q4_K_M / Q8_0 files, decoder_cuda_test), then
#               `gemforge bench -m FILE --backend cuda -p 2048 -n 128` per model.
#   STAGE=peer: llama-bench (CUDA, flash attention) on the same files; carry .device/peer (binaries as for
#               bench/llama_cpp_cuda_peer.sh). Our binaries and the peer's do not fit in one call's 64 MiB.
# Usage (device, repo root): STAGE=ours|peer bench/cuda_quant_run.sh "gemma2-9b:q4_k_m gemma2-9b:q8_0 gemma3-12b:q4_k_m"
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/gguf
STAGE=${STAGE:-ours}
MODELS=${1:-"gemma2-9b:q4_k_m gemma2-9b:q8_0 gemma3-12b:q4_k_m"}
DEADLINE_S=${DEADLINE_S:-540}
GF_LIBS=$PWD/.device/lib:/usr/local/cuda/lib64
left() { echo $(( DEADLINE_S - $(date +%s) + T0 )); }
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
# The tokenizer written into the files (llama.cpp loads no model without a vocabulary): .device/peer/tok or .device/tok.
tok_for() {
  local f; case $1 in gemma3*) f=gemma3_tokenizer.json.xz;; *) f=gemma_tokenizer.json.xz;; esac
  if [ -f .device/peer/tok/$f ]; then echo .device/peer/tok/$f; else echo .device/tok/$f; fi
}
gguf() {  # gguf NAME DTYPE [--tiny]: the file's path, written once
  local f=/tmp/gguf/$1-$2${3:+-tiny}.gguf tok
  tok=$(tok_for "$1")
  if [ ! -s "$f" ]; then
    python3 bench/make_synthetic_gguf.py ${3:-} "$1" "$f.tmp" --dtype "$2" $([ -f "$tok" ] && echo --tokenizer "$tok") >&2 \
      && mv "$f.tmp" "$f"
  fi
  echo "$f"
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader

if [ "$STAGE" = ours ]; then
  say "GPU tests"
  files=$(gguf gemma3-1b q4_k_m --tiny):$(gguf gemma2-9b q8_0 --tiny):$(gguf gemma3-1b bf16 --tiny)
  LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_QUANT_TEST_GGUFS=$files .device/bin/quant_cuda_test 2>&1 | tee "$OUT/quant_tests.log" \
    | grep -E "^\[ |OK|FAILED|PASSED|Failure|error|Expected|Which|actual" | head -60
  [ -x .device/bin/decoder_cuda_test ] && LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_FIXTURES_DIR=$PWD/.device/fixtures \
    .device/bin/decoder_cuda_test 2>&1 | tee "$OUT/decoder_tests.log" | grep -E "FAILED|PASSED|Failure" | head -20
fi
[ "$STAGE" = peer ] && { mkdir -p /tmp/llama && cat .device/peer/llama-bin.tar.xz.part-* | tar xJf - -C /tmp/llama; }

for md in $MODELS; do
  m=${md%%:*}; dt=${md##*:}
  [ "$(left)" -gt 60 ] || { say "deadline: $md not run"; continue; }
  say "GGUF $m $dt"
  f=$(gguf "$m" "$dt")
  ls -la "$f"
  if [ "$STAGE" = ours ]; then
    LD_LIBRARY_PATH=$GF_LIBS timeout "$(left)" .device/bin/gemforge bench -m "$f" --backend cuda -p 2048 -n 128 -r 2 \
      --json "$OUT/gf_${m}_$dt.json" 2>&1 | grep -E "^\||error"
  else
    LD_LIBRARY_PATH=/tmp/llama/bin:/usr/local/cuda/lib64 timeout "$(left)" /tmp/llama/bin/llama-bench -m "$f" -ngl 99 -fa 1 \
      -p 2048 -n 128 -r 3 2>&1 | grep -E "^\||error"
  fi
done
df -h /tmp | tail -1
if [ "$STAGE" = ours ] && [ -n "${PROFILE:-}" ]; then  # per-op GPU time of decode (the CUDA backend's profiler)
  f=$(gguf ${PROFILE%%:*} ${PROFILE##*:})
  LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_CUDA_PROFILE=1 .device/bin/gemforge bench -m "$f" --backend cuda -p 16 -n 32 -r 1 2>&1 | grep -E "M=1 |gemv|GPU time|^op " | head -20
fi
if [ "$STAGE" = ours ] && [ -n "${PROFILE:-}" ]; then  # the same without programmatic dependent launch
  LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_CUDA_PDL=0 .device/bin/gemforge bench -m "$f" --backend cuda -p 16 -n 64 -r 1 2>&1 | grep -E "tg64"
fi
