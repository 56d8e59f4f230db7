#!/usr/bin/env bash
# One device call (no GPU needed, but torch + transformers 5.x + peft 0.21 are
# installed there): the PyTorch/PEFT references of the LoRA trainer, written
# by make_lora_reference.py into $OUT/lora_refs.tar. Unpack that into
# tests/lora_references/ here; tests/finetune_peft_test.cpp then compares
# gemforge's loaded adapter, logits, loss, gradients and 50-step loss curve.
# The shared fixtures travel as .device/fixtures (as for device_run.sh).
# Usage (device, repo root): tests/lora_references/lora_device_run.sh
set -eu
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
FIX=${GEMFORGE_FIXTURES_DIR:-$PWD/.device/fixtures}
python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
rm -rf /tmp/lora_refs
CUDA_VISIBLE_DEVICES= python3 tests/lora_references/make_lora_reference.py --fixtures "$FIX" --out /tmp/lora_refs 2>&1 | grep -v -i -E "warn"
(cd /tmp/lora_refs && tar cf "$OUT/lora_refs.tar" .)
ls -la /tmp/lora_refs
