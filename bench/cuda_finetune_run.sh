#!/usr/bin/env bash
# The CUDA LoRA trainer on the device machine, in one call:
#   1. tests: .device/bin/train_cuda_test (the CUDA trainer against the CPU float32 trainer on every fixture);
#   2. ours: `gemforge finetune --backend cuda --synthetic NAME` (random bf16 weights of the shape) on random
#      token sequences, LoRA r=RANK on all linear layers, micro-batch B, SEQ tokens each: tokens/s of the steps
#      after the first (metrics.jsonl), peak GPU memory (nvidia-smi, sampled);
#   3. peer: PEFT + transformers on the same shape, batch, seq and rank (bench/peft_train_bench.py), in the same call.
# Binaries (build-dev, see docs/DEVELOPERS.md): .device/bin/{gemforge,libgemforge_cuda.so,train_cuda_test}.
# Usage (device, repo root): bench/cuda_finetune_run.sh ["gemma3-1b:8 gemma2-2b:8 gemma2-9b:4"]
#   env: SEQ (1024), RANK (16), STEPS (4 timed + 1), STAGES ("tests ours peer"), DEADLINE_S (560)
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
SHAPES=${1:-"gemma3-1b:8 gemma2-2b:8 gemma2-9b:4"}
SEQ=${SEQ:-1024}
RANK=${RANK:-16}
STEPS=${STEPS:-4}
STAGES=${STAGES:-"tests ours peer"}
DEADLINE_S=${DEADLINE_S:-560}
GF_LIBS=$PWD/.device/lib:/usr/local/cuda/lib64
left() { echo $(( DEADLINE_S - $(date +%s) + T0 )); }
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader

if has tests; then
  say "GPU tests: train_cuda_test"
  LD_LIBRARY_PATH=$GF_LIBS GEMFORGE_FIXTURES_DIR=$PWD/.device/fixtures timeout "$(( $(left) / 2 ))" .device/bin/train_cuda_test \
    --gtest_output=xml:"$OUT/train_cuda_test.xml" 2>&1 | tee "$OUT/train_cuda_test.log" \
    | grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which|actual|Value of|vs " | head -80
fi

# Frozen linear parameters of a synthetic shape (no embedding): FLOPs per trained token = 4 N (frozen base) or 6 N.
params() {
  python3 - "$1" <<'EOF'
import os, sys
sys.path.insert(0, "bench")
from hf_generate_bench import SHAPES
_, H, L, heads, kv, I, hd, *_ = SHAPES[sys.argv[1]]
print(L * (H * hd * (heads + 2 * kv) + heads * hd * H + 3 * H * I))
EOF
}

for sb in $SHAPES; do
  m=${sb%%:*}; b=${sb##*:}
  [ "$(left)" -gt 90 ] || { say "deadline: $m not run"; continue; }
  if has ours; then
    say "ours: gemforge finetune --backend cuda --synthetic $m, batch $b x seq $SEQ, r=$RANK"
    data=/tmp/ft_$m.jsonl
    python3 -c "
import json, random
random.seed(1)
with open('$data', 'w') as f:
    for _ in range($b * ($STEPS + 1)):
        f.write(json.dumps({'input_ids': [2] + [random.randrange(10, 200000) for _ in range($SEQ - 1)]}) + '\n')"
    rm -rf "/tmp/ft_out_$m"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/mem_$m.txt" 2>/dev/null &
    smi=$!
    LD_LIBRARY_PATH=$GF_LIBS timeout "$(( $(left) - 60 ))" .device/bin/gemforge finetune --backend cuda --synthetic "$m" \
      --data "$data" --out "/tmp/ft_out_$m" --steps $(( STEPS + 1 )) --batch "$b" --seq "$SEQ" --rank "$RANK" --alpha $(( 2 * RANK )) \
      --lr 1e-4 --seed 1 --log-every 1 2>&1 | tee "$OUT/finetune_$m.log" | grep -E "^step|error|finetune:" | head -20
    kill "$smi" 2>/dev/null
    cp "/tmp/ft_out_$m/metrics.jsonl" "$OUT/metrics_$m.jsonl" 2>/dev/null
    n=$(params "$m")
    python3 - "/tmp/ft_out_$m/metrics.jsonl" "/tmp/mem_$m.txt" "$m" "$b" "$SEQ" "$RANK" "$n" <<'EOF'
import json, sys
path, mem, m, b, seq, r, n = sys.argv[1:]
try:
    rows = [json.loads(l) for l in open(path)]
except OSError:
    rows = []
timed = rows[1:]
if not timed:
    print(f"| {m:<12} | gemforge cuda | no timed steps (see finetune_{m}.log) |")
    sys.exit(0)
tps = sum(x["tokens"] for x in timed) / sum(x["tokens"] / x["tokens_per_s"] for x in timed)
try:
    peak = max(int(l) for l in open(mem) if l.strip().isdigit()) / 1024
except (OSError, ValueError):
    peak = float("nan")
n = int(n)
print(f"| {m:<12} | gemforge cuda | batch {b} x seq {seq} r={r} | {tps:10.1f} tok/s | peak {peak:.1f} GiB (nvidia-smi) | "
      f"MFU {100 * 6 * n * tps / 989e12:.1f}% (6N) {100 * 4 * n * tps / 989e12:.1f}% (4N) | loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f} |")
EOF
  fi
  if has peer && [ "$(left)" -gt 90 ]; then
    say "peer: PEFT on $m, batch $b x seq $SEQ, r=$RANK"
    timeout "$(( $(left) - 20 ))" python3 bench/peft_train_bench.py --model "$m" --batch "$b" --seq "$SEQ" --rank "$RANK" \
      --alpha $(( 2 * RANK )) --steps "$STEPS" --warmup 1 --json "$OUT/peft_$m.json" 2>&1 | tee "$OUT/peft_$m.log" \
      | grep -E "^\||parameters|Error|error" | tail -5
  fi
done
say "done"
