#!/usr/bin/env bash
# The CPU speed table of docs/BENCHMARKS.md: gemforge bench and llama-bench on
# the same GGUF files, same thread count, in the same run; then each engine's
# peak RSS (/usr/bin/time) on a tg32 and a pp512 run.
# Usage: bench/cpu_vs_llama.sh LLAMA_BIN_DIR FILE.gguf [FILE.gguf ...]
#   (llama.cpp built outside this repository: cmake -B build -DGGML_NATIVE=ON && cmake --build build)
set -u
L=$1; shift
GF=${GF:-$(dirname "$0")/../build/gemforge}
T=${THREADS:-2}
for f in "$@"; do
  echo "== $(basename "$f")"
  "$GF" bench -m "$f" -t "$T" -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"
  "$L/llama-bench" -m "$f" -t "$T" -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"
  for a in "-p 0 -n 32" "-p 512 -n 0"; do
    /usr/bin/time -f "gemforge $a: peak RSS %M KB" "$GF" bench -m "$f" -t "$T" $a -r 1 2>&1 | grep "peak RSS.*KB"
    /usr/bin/time -f "llama.cpp $a: peak RSS %M KB" "$L/llama-bench" -m "$f" -t "$T" $a -r 1 2>&1 | grep "peak RSS"
  done
done
