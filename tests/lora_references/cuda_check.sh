#!/usr/bin/env bash
# One device call: `score --lora --backend cuda` (the unmerged adapter on the
# GPU, bf16 activations) against PEFT's logits for each PEFT-made adapter in
# tests/lora_references (and the same without the adapter, for contrast).
# Binaries and fixtures as for tests/references/device_run.sh.
set -u
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for d in tests/lora_references/lora-*/; do
  name=$(basename "$d"); fixture=${name#lora-}
  ref=$d/lora_reference.safetensors
  ids=$(python3 -c "from safetensors.numpy import load_file; print(','.join(map(str, load_file('$ref')['input_ids'])))")
  for lora in "--lora $d/adapter" ""; do
    .device/bin/gemforge score --backend cuda -m .device/fixtures/hf-tiny/$fixture $lora --ids "$ids" --logits-out /tmp/l.safetensors \
      > /tmp/s.log 2>&1 || { echo "$name: score failed"; tail -2 /tmp/s.log; continue; }
    python3 - "$ref" "$name${lora:+ --lora}" <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file
ref = load_file(sys.argv[1])["logits"].astype(np.float64); got = load_file("/tmp/l.safetensors")["logits"].astype(np.float64)
def lsm(x): x = x - x.max(-1, keepdims=True); return x - np.log(np.exp(x).sum(-1, keepdims=True))
p = lsm(ref); q = lsm(got); kl = (np.exp(p) * (p - q)).sum(-1).max()
print(f"{sys.argv[2]} (cuda) vs PEFT: max KL {kl:.3g}, max |logit - ref| {np.max(np.abs(got - ref) / np.maximum(1, np.abs(ref))):.3g}, top-1 {np.mean(got.argmax(-1) == ref.argmax(-1)):.3f}")
PY
  done
done
