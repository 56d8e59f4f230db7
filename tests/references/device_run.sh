#!/usr/bin/env bash
# One device call: makes the Hugging Face references with transformers
# (make_references.py, beside this script) into $OUT/refs.tar, then runs the
# GPU tests on every reference, the shared fixtures' and these, plus
# `gemforge score --backend cuda` on each of ours. Binaries come carried in
# .device/bin (gemforge, libgemforge_cuda.so, decoder_cuda_test), libraries
# the device image lacks in .device/lib, the shared fixtures in
# .device/fixtures (see bench/cuda_device_run.sh for how to build them).
# Usage (device, repo root): tests/references/device_run.sh [--use-committed]
#   --use-committed: test the references committed in tests/references
#   instead of making fresh ones (e.g. to check a new build).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
REFS=$PWD/tests/references
if [ "${1:-}" != --use-committed ]; then
  REFS=/tmp/refs
  rm -rf "$REFS"
  echo "== references (transformers $(python3 -c 'import transformers; print(transformers.__version__)'))"
  python3 tests/references/make_references.py --out "$REFS" 2>&1 | grep -v -i -E "warn|Writing model|Loading weights"
  (cd "$REFS" && tar cf "$OUT/refs.tar" .)
fi
echo "== GPU tests"
GEMFORGE_FIXTURES_DIR=$PWD/.device/fixtures GEMFORGE_REFERENCES_DIR=$REFS .device/bin/decoder_cuda_test 2>&1 \
  | tee "$OUT/cuda_tests.log" | grep -E "^\[ |OK \]|FAILED|PASSED|Failure|error|Expected|Which|actual" | head -120
echo "== score --backend cuda on each reference of ours"
for d in "$REFS"/*/; do
  ids=$(python3 -c "from safetensors.numpy import load_file; print(','.join(map(str, load_file('$d/reference.safetensors')['input_ids'])))")
  .device/bin/gemforge score --backend cuda -m "$d" --ids "$ids" --logits-out /tmp/l.safetensors > /tmp/score.log 2>&1 \
    || { echo "$(basename "$d"): score failed"; tail -3 /tmp/score.log; continue; }
  python3 - "$d" <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file
ref = load_file(sys.argv[1] + "/reference.safetensors")["logits"]
got = load_file("/tmp/l.safetensors")["logits"]
err = np.max(np.abs(got - ref) / np.maximum(1, np.abs(ref)))
print(f"{sys.argv[1].rstrip('/').split('/')[-1]}: score --backend cuda max |logit - ref| = {err:.3g}, top-1 agree {np.mean(got.argmax(-1) == ref.argmax(-1)):.3f}")
PY
done
