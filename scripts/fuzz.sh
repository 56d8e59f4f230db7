#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan, in build-fuzz)
# and runs each for SECONDS_EACH seconds (default 10), one at a time. Fails on
# the first crash, leak, sanitizer report or timeout; the input that did it is
# left in build-fuzz/artifacts/ (replay: build-fuzz/fuzz/TARGET_fuzz FILE).
# New coverage goes to build-fuzz/corpus/TARGET; the seeds in fuzz/corpus stay as they are.
# Usage: scripts/fuzz.sh [SECONDS_EACH] [TARGET...]   (targets: see below; default all)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
shift || true
all=(gguf safetensors safetensors_index hf_config tokenizer openai_request)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
declare -A max_len=([gguf]=8192 [safetensors]=4096 [safetensors_index]=2048 [hf_config]=4096 [tokenizer]=8192 [openai_request]=4096)

CXX_FUZZ=${CXX_FUZZ:-clang++}
if ! command -v "$CXX_FUZZ" >/dev/null; then
  echo "fuzz.sh: $CXX_FUZZ not found (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
echo "== Build fuzzers (build-fuzz)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_COMPILER="$CXX_FUZZ" -DGEMFORGE_FUZZ=ON -DGEMFORGE_TESTS=OFF -DGEMFORGE_CUDA=OFF -DGEMFORGE_NATIVE=OFF >/dev/null
cmake --build build-fuzz --target fuzzers -j "${JOBS:-2}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p build-fuzz/artifacts build-fuzz/logs
status=0
for t in "${targets[@]}"; do
  [ -n "${max_len[$t]:-}" ] || { echo "fuzz.sh: unknown target $t (${all[*]})" >&2; exit 2; }
  work=build-fuzz/corpus/$t
  log=build-fuzz/logs/$t.log
  mkdir -p "$work"
  echo "== $t: ${secs} s"
  if ! "build-fuzz/fuzz/${t}_fuzz" "$work" "fuzz/corpus/$t" -dict="fuzz/dict/$t.dict" -max_total_time="$secs" \
       -max_len="${max_len[$t]}" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/artifacts/$t-" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "FAIL: $t (log: $log; input: build-fuzz/artifacts/$t-*)" >&2
    status=1
    break
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  echo "   $t: ${took:-?} s, ${runs:-?} executions, corpus $(ls "$work" | wc -l) files"
done
exit $status
