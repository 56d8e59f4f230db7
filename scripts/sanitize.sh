#!/usr/bin/env bash
# Builds the CPU test suite with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan: no CUDA, every UBSan finding fatal, leak checking on) and runs
# the README's test command there. Any report fails the run.
# Usage: scripts/sanitize.sh [extra ctest args]   (SANITIZE_FULL=1: the slow load tests too)
set -euo pipefail
cd "$(dirname "$0")/.."

SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
echo "== Build with ASan + UBSan (build-asan)"
# -O1 -g with assertions on: fast enough for the suite, exact stack traces.
# The kernel tests run every CPU kernel variant this machine supports (tests/cpu_isa_param.h).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DGEMFORGE_CUDA=OFF -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" >/dev/null
cmake --build build-asan -j "${JOBS:-2}"

echo "== Tests under ASan + UBSan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# Left out unless SANITIZE_FULL=1: the soak test (label soak: 5 rounds of 400
# requests, past its 900 s timeout under ASan) and the four multi-client load
# tests of the real 270M (45-105 s each under ASan on an idle 2-core VM, 3 min
# together; 2-6 min each on a loaded one; they pass). The server code they
# drive runs under ASan in the other ServerTest and OpenAiClient cases.
# Measured on the 2-core VM: cold build (no ccache) 8.2 min, the tests 81 s.
if [ "${SANITIZE_FULL:-0}" = 1 ]; then
  ctest --test-dir build-asan --output-on-failure -LE cuda -j2 "$@"
else
  ctest --test-dir build-asan --output-on-failure -LE 'cuda|soak' -j2 \
    -E 'ServerTest\.(ConcurrentGreedyEqualsOneAtATime|SixtyFourStreamingClientsEqualOneAtATime|CacheExhaustionCompletesEveryRequest|EchoLogprobsUnderCachePressure)' "$@"
fi
