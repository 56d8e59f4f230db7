#!/usr/bin/env bash
# One device call for the Serving section of docs/BENCHMARKS.md: `gemforge
# serve` on a synthetic shape driven by `gemforge bench serve` at a rate sweep,
# then `gemforge bench offline` (the same engine without HTTP) on the same
# prompts' shape and concurrency. Binaries and the tokenizer are carried in
# .device/ (see bench/cuda_device_run.sh).
# Usage: bench/cuda_serving_run.sh [model] [prompts] [input] [output] [parallel] [rates]   (SKIP_OFFLINE=1: the sweep only)
set -u
. "$(dirname "$0")/wait_for_server.sh"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
M=${1:-gemma2-9b}
N=${2:-32}
IN=${3:-1000}
GEN=${4:-512}
PAR=${5:-64}
RATES=${6:-1,4,16,inf}
PORT=8080
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
gf() { .device/bin/gemforge "$@"; }
echo "== serve $M"
# Started directly (not through gf) so that $! is the server itself.
.device/bin/gemforge serve --backend cuda --synthetic "$M" --tokenizer .device/tok/gemma_tokenizer.json.xz --port $PORT --kv-tokens 131072 \
  --parallel "$PAR" --chunk 2048 >"$OUT/serve_$M.log" 2>&1 &
SERVER=$!
wait_for_server $PORT $SERVER "$OUT/serve_$M.log" || exit 1
gf bench serve --port $PORT --request-rate "$RATES" --num-prompts "$N" --input-words "$IN" --output-tokens "$GEN" \
  --usd-per-hour 3 --json "$OUT/bench_serve_$M.json" 2>&1 | tee "$OUT/bench_serve_$M.log"
kill $SERVER
wait $SERVER
[ -n "${SKIP_OFFLINE:-}" ] && exit 0  # the HTTP sweep only
echo "== bench offline $M"
gf bench offline --backend cuda --synthetic "$M" --num-prompts "$N" --input-tokens "$IN" --output-tokens "$GEN" --parallel "$PAR" \
  --kv-tokens 131072 --chunk 2048 --usd-per-hour 3 --json "$OUT/offline_$M.json" 2>&1 | tee "$OUT/offline_$M.log"
