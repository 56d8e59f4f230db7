#!/usr/bin/env bash
# The llama.cpp CUDA peer of docs/BENCHMARKS.md (CUDA and Serving sections), on the device machine:
# builds llama.cpp from a source copy (never committed: a git-ignored folder), writes a BF16 GGUF of
# random weights of the shape of `gemforge --synthetic NAME` (bench/make_synthetic_gguf.py), runs
# llama-bench (pp2048, tg128), llama-batched-bench (batch 1..128) and the llama-server sweep driven
# by our client (`gemforge bench serve`), and deletes each GGUF after use (the disk is 64 GiB).
#
# Workstation, once (the source is the llama.cpp snapshot at /work/llama.cpp, unslothai mirror commit d32676d77;
# .device/ is git-ignored through .git/info/exclude and travels only where a device call carries it):
#   mkdir -p .device/llama-src .device/peer/tok && (cd /work/llama.cpp && tar cf - ggml src include common tools vendor \
#     cmake scripts licenses CMakeLists.txt CMakePresets.json LICENSE examples pocs app) | tar xf - -C .device/llama-src
#   cp ../shared/fixtures/tokenizers/gemma{,3}_tokenizer.json.xz .device/peer/tok/
#   (our client: .device/bin/gemforge + .device/lib, as for bench/cuda_device_run.sh)
# First device call (carry .device/llama-src .device/peer .device/bin .device/lib): builds in ~6 min on 16 cores and
# sends the binaries back as $OUT/llama-bin.tar.xz.part-* (3 x <= 15 MiB); copy those to .device/peer/ and later
# calls (carry .device/peer .device/bin .device/lib, not the source) unpack them instead of building.
# Usage (device, repo root):  bench/llama_cpp_cuda_peer.sh "gemma2-9b gemma-7b" "gemma2-9b"
#   $1 models for llama-bench + llama-batched-bench, $2 models for the llama-server sweep.
#   Env: STAGES (default "bench batched serve"), DEADLINE_S (skip what would start after it, default 560),
#        ORDER (models to take first), SERVER_ARGS (llama-server slots/context/KV flags), PEER_DTYPE (bf16 | f16, default bf16), SERVE_RATES (default 1,4,16,inf);
#        dry run on a CPU build: LLAMA_BUILD=/path/to/build PEER_TINY=1 NPROMPTS=4 NOUT=8 GF=build/gemforge
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
ROOT=$PWD
SRC=$ROOT/.device/llama-src
PEER=$ROOT/.device/peer
BUILD=${LLAMA_BUILD:-/tmp/llama-build}  # survives between calls while the machine stays warm
GGUF_DIR=/tmp/gguf
LOG=$OUT/peer.log
RES=$OUT/results.jsonl
MODELS=${1-"gemma2-9b gemma-7b gemma3-1b gemma3-12b"}
SERVE_MODELS=${2-gemma2-9b}  # "" = no sweep
STAGES=${STAGES:-"bench batched serve"}
DEADLINE_S=${DEADLINE_S:-560}
DTYPE=${PEER_DTYPE:-bf16}
RATES=${SERVE_RATES:-1,4,16,inf}
# -np 64 -c 131072 as our `serve --parallel 64 --kv-tokens 131072`. The prompt cache is off: with it on (the default),
# each new task saves every idle slot's KV to host memory and the sweep collapsed at 4 req/s (docs/BENCHMARKS.md)
SERVER_ARGS=${SERVER_ARGS:-"-np 64 -c 131072 --cont-batching --cache-ram 0 --no-cache-idle-slots"}
GF_LIBS=$ROOT/.device/lib:/usr/local/cuda/lib64
GF=${GF:-$ROOT/.device/bin/gemforge}
[ -x "$ROOT/.device/bin/gemforge-peer" ] && GF=$ROOT/.device/bin/gemforge-peer
NPROMPTS=${NPROMPTS:-32}; NOUT=${NOUT:-512}  # smaller only for dry runs
TINY=${PEER_TINY:+--tiny}             # dry runs on a CPU build: small shapes
exec > >(tee -a "$LOG") 2>&1
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(elapsed)s] $*"; }
record() { python3 -c 'import json,sys; print(json.dumps({"kind": sys.argv[1], "model": sys.argv[2], "data": json.load(open(sys.argv[3]))}))' "$@" >> "$RES"; }
tok_for() { case $1 in gemma3*) echo "$PEER/tok/gemma3_tokenizer.json.xz";; *) echo "$PEER/tok/gemma_tokenizer.json.xz";; esac; }
tok_arg() { echo "--tokenizer $(tok_for "$1")"; }  # llama.cpp loads no model without a vocabulary

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
df -h /tmp | tail -1

# Gemma 1-3: bench/make_synthetic_gguf.py; Gemma 4: our own writer, which writes what llama.cpp's converter
# does (tests/gguf_llama_converter.py), with the Gemma 3 vocabulary (Gemma 4's ordinary one) as "gemma4".
# Without the carried tokenizer (a call near the carry limit), a placeholder vocabulary of the same size does for
# llama-bench, which feeds token ids, not text.
g4_tokenizer() {
  local t=$PEER/tok/gemma3_tokenizer.json.xz p=/tmp/g4-placeholder-tokenizer.json
  if [ -f "$t" ]; then echo "$t"; return; fi
  [ -f "$p" ] || python3 -c 'import json,sys
names = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>"}
json.dump({"model": {"vocab": {names.get(i, f"<t{i}>"): i for i in range(262144)}, "merges": []}, "added_tokens": []}, open(sys.argv[1], "w"))' "$p"
  echo "$p"
}
write_gguf() {  # NAME DEST
  case $1 in
    gemma4*) LD_LIBRARY_PATH=$GF_LIBS "$GF" convert --synthetic "$1" --type "$DTYPE" --no-gemforge-keys \
               --tokenizer "$(g4_tokenizer)" -o "$2" ;;
    *) python3 bench/make_synthetic_gguf.py $TINY "$1" "$2" --dtype "$DTYPE" $(tok_arg "$1") ;;
  esac
}

# ---- llama.cpp binaries: warm build dir, carried tarball, or build from source
gguf_bg() {  # write the first model's GGUF while the compiler runs
  mkdir -p "$GGUF_DIR"
  write_gguf "$1" "$GGUF_DIR/$1.tmp" > "$GGUF_DIR/$1.log" 2>&1 && mv "$GGUF_DIR/$1.tmp" "$GGUF_DIR/$1.gguf"
}
if [ ! -x "$BUILD/bin/llama-server" ] && ls "$PEER"/llama-bin.tar.xz.part-* >/dev/null 2>&1; then
  say "unpacking carried llama.cpp binaries"
  mkdir -p "$BUILD" && cat "$PEER"/llama-bin.tar.xz.part-* | tar xJf - -C "$BUILD" && touch "$BUILD/.saved"
fi
PREGEN_PID=
if [ ! -x "$BUILD/bin/llama-server" ]; then
  first=${MODELS%% *}; gguf_bg "$first" & PREGEN_PID=$!
  if [ ! -f "$BUILD/.building" ]; then
    say "building llama.cpp (CUDA, sm_90) from $SRC"
    mkdir -p "$BUILD" && touch "$BUILD/.building"
    # in its own session: if this call ends first, the build goes on while the machine stays warm
    # GIT_DIR: else build-info takes the commit of the enclosing (gemforge) checkout
    setsid nohup env GIT_DIR=/nonexistent bash -c "cmake -S '$SRC' -B '$BUILD' -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF \
        -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
      && cmake --build '$BUILD' -j16 --target llama-bench llama-batched-bench llama-server; echo \$? > '$BUILD/.build_rc'" \
      > /tmp/llama-build.log 2>&1 < /dev/null &
  fi
  while [ ! -f "$BUILD/.build_rc" ] && [ "$(elapsed)" -lt $((DEADLINE_S - 20)) ]; do sleep 5; done
  if [ ! -f "$BUILD/.build_rc" ]; then say "build still running: call again while the machine is warm"; tail -3 /tmp/llama-build.log; exit 0; fi
  if [ "$(cat "$BUILD/.build_rc")" != 0 ]; then tail -40 /tmp/llama-build.log; cp /tmp/llama-build.log "$OUT/"; exit 1; fi
  say "build done"
fi
if [ ! -f "$BUILD/.saved" ] && [ -f "$BUILD/.build_rc" ]; then  # ship the binaries back once, for later fresh machines
  (cd "$BUILD" && tar cf - bin/llama-bench bin/llama-batched-bench bin/llama-server $(cd "$BUILD" && ls bin/*.so* 2>/dev/null)) \
    | xz -1 -T16 | split -b 15m - "$OUT/llama-bin.tar.xz.part-" && touch "$BUILD/.saved"
  ls -la "$OUT"/llama-bin.tar.xz.part-*
fi
export LD_LIBRARY_PATH=$BUILD/bin:/usr/local/cuda/lib64
LB=$BUILD/bin

make_gguf() {
  local m=$1 f=$GGUF_DIR/$1.gguf
  if [ -n "$PREGEN_PID" ] && [ "$m" = "${MODELS%% *}" ]; then wait "$PREGEN_PID"; cat "$GGUF_DIR/$m.log"; PREGEN_PID=; fi
  [ -s "$f" ] && return 0
  mkdir -p "$GGUF_DIR"
  rm -f "$GGUF_DIR"/*.tmp; find "$GGUF_DIR" -name "*.gguf" ! -name "$m.gguf" -delete  # left by an earlier call cut short
  write_gguf "$m" "$f.tmp" && mv "$f.tmp" "$f"
}
left() { echo $(( DEADLINE_S - $(elapsed) )); }

run_server_sweep() {  # one `bench serve` per rate, each cut at the deadline, so that finished rates are kept
  local m=$1 f=$GGUF_DIR/$1.gguf port=18080
  say "llama-server $m ($SERVER_ARGS)"
  "$LB/llama-server" -m "$f" -ngl 99 -fa on $SERVER_ARGS -b 2048 -ub 512 --host 127.0.0.1 --port $port > "/tmp/server_$m.log" 2>&1 &
  local spid=$!
  for i in $(seq 1 240); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
  curl -s "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
       -d '{"prompt":"warm up","max_tokens":8,"temperature":0}' > /dev/null   # one warm-up request
  for r in ${RATES//,/ }; do
    [ "$(left)" -gt 20 ] || { say "deadline: rate $r not run"; continue; }
    LD_LIBRARY_PATH=$GF_LIBS timeout "$(left)" "$GF" bench serve --port $port --request-rate "$r" --num-prompts $NPROMPTS \
        --input-words 1000 --output-tokens $NOUT --usd-per-hour 3 --json "/tmp/serve_${m}_$r.json" \
      && record serve "$m" "/tmp/serve_${m}_$r.json" || { say "rate $r cut at the deadline or failed"; tail -5 "/tmp/server_$m.log"; }
  done
  kill "$spid"; wait "$spid" 2>/dev/null
  grep -E "n_slots|n_ctx_slot|kv_unified|model buffer size|KV buffer size" "/tmp/server_$m.log" | head -10
}

for m in $(echo ${ORDER:-} $MODELS $SERVE_MODELS | tr ' ' '\n' | awk '!seen[$0]++'); do
  do_bench=; do_serve=
  echo " $MODELS " | grep -q " $m " && [[ " $STAGES " == *" bench "* || " $STAGES " == *" batched "* ]] && do_bench=1
  echo " $SERVE_MODELS " | grep -q " $m " && [[ " $STAGES " == *" serve "* ]] && do_serve=1
  [ -n "$do_bench$do_serve" ] || continue
  if [ "$(left)" -lt 60 ]; then say "deadline: skipping $m"; continue; fi
  say "GGUF $m"; make_gguf "$m" || { say "GGUF $m failed"; continue; }
  f=$GGUF_DIR/$m.gguf
  if [ -n "$do_bench" ]; then
    if [[ " $STAGES " == *" bench "* ]]; then
      say "llama-bench $m"
      "$LB/llama-bench" -m "$f" -ngl 99 -fa 1 -p 2048 -n 128 -r 3 -o json > "/tmp/lb_$m.json" 2> "/tmp/lb_$m.err" \
        && record llama-bench "$m" "/tmp/lb_$m.json" || tail -20 "/tmp/lb_$m.err"
      python3 - "/tmp/lb_$m.json" <<'EOF'
import json,sys
for r in json.load(open(sys.argv[1])):
    print(f"  {r['model_type']}  n_prompt={r['n_prompt']} n_gen={r['n_gen']}  {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} tok/s  ({r.get('gpu_info','')}, build {r.get('build_commit','')})")
EOF
    fi
    if [[ " $STAGES " == *" batched "* ]] && [ "$(left)" -gt 30 ]; then
      say "llama-batched-bench $m"
      "$LB/llama-batched-bench" -m "$f" -ngl 99 -fa on -c 16384 -b 2048 -ub 512 -npp 32 -ntg 32 -npl 1,8,32,64,128 \
        --output-format jsonl > "/tmp/bb_$m.jsonl" 2>&1 || tail -20 "/tmp/bb_$m.jsonl"
      python3 - "/tmp/bb_$m.jsonl" "$m" "$RES" <<'EOF'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"n_kv_max"')]
open(sys.argv[3],"a").write(json.dumps({"kind":"batched-bench","model":sys.argv[2],"data":rows})+"\n")
for r in rows: print(f"  B={r['pl']:4d}  S_TG {r['speed_tg']:9.1f} tok/s  t_tg {r['t_tg']:.3f} s  S_PP {r['speed_pp']:9.1f}")
EOF
    fi
  fi
  if [ -n "$do_serve" ]; then
    if [ "$(left)" -gt 60 ]; then run_server_sweep "$m"; else say "deadline: skipping the llama-server sweep on $m"; fi
  fi
  rm -f "$f"
done
say "done"
