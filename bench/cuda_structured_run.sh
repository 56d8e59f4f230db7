#!/usr/bin/env bash
# Structured outputs' cost on the GPU (docs/BENCHMARKS.md, "Structured outputs"): `gemforge serve --backend cuda`
# on a synthetic shape, 64 concurrent chat requests with a json_schema response_format or without, alternated
# (bench/structured_outputs_bench.py). Carry .device/bin, .device/lib and .device/tok (see bench/cuda_device_run.sh).
# Usage (device, repo root): bench/cuda_structured_run.sh [model] [repeats]
set -u
. "$(dirname "$0")/wait_for_server.sh"
M=${1:-gemma3-1b}
REPS=${2:-2}
PORT=8093
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
case $M in gemma3*) TOK=.device/tok/gemma3_tokenizer.json.xz;; *) TOK=.device/tok/gemma_tokenizer.json.xz;; esac
.device/bin/gemforge serve --backend cuda --synthetic "$M" --tokenizer "$TOK" --port $PORT --parallel 64 --kv-tokens 65536 \
  >"$OUT/serve_structured_$M.log" 2>&1 &
SERVER=$!
wait_for_server $PORT $SERVER "$OUT/serve_structured_$M.log" || exit 1
python3 bench/structured_outputs_bench.py $PORT plain 1 $SERVER  # warm-up (graphs captured)
for _ in $(seq "$REPS"); do
  python3 bench/structured_outputs_bench.py $PORT json 1 $SERVER
  python3 bench/structured_outputs_bench.py $PORT plain 1 $SERVER
done
kill $SERVER
wait $SERVER 2>/dev/null
