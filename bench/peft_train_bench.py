#!/usr/bin/env python3
"""PEFT + transformers LoRA training speed on the GPU, the peer of
`gemforge finetune --backend cuda --synthetic NAME` (bench/cuda_finetune_run.sh).

The model is built from the config of the shape (bench/hf_generate_bench.py's
table, random bf16 weights, no hub access), LoRA r/alpha on every linear layer
of the decoder (q, k, v, o, gate, up, down; the tied embedding frozen), AdamW,
sdpa attention, no activation checkpointing: the setup of issue 14's PEFT
figures. Each step: `batch` sequences of `seq` random tokens, loss on all of them.

Tokens/s = batch * seq * timed steps / time, after warm-up steps; MFU both ways
(6·N and 4·N FLOPs per token, N the base parameters without the embedding,
against --peak-tflops).

  python3 bench/peft_train_bench.py --model gemma2-2b --batch 8 --seq 1024 --rank 16 --steps 6 --json out.json
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_generate_bench import SHAPES, build_model  # noqa: E402

import peft  # noqa: E402
import transformers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=6, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg, model, built_s = build_model(a.model, attn_implementation="sdpa")
    base_params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    lcfg = peft.LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, lcfg)
    # fp32 adapters (master weights and AdamW state in fp32), as gemforge keeps them.
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    print(f"{a.model}: {base_params / 1e9:.2f} B base parameters (without the embedding), {trainable / 1e6:.1f} M LoRA parameters, "
          f"built in {built_s:.1f} s (transformers {transformers.__version__}, peft {peft.__version__}, "
          f"torch {torch.__version__}, {torch.cuda.get_device_name()})", flush=True)

    def step():
        ids = torch.randint(10, cfg.vocab_size, (a.batch, a.seq), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    losses = [step() for _ in range(a.steps)]
    torch.cuda.synchronize()
    dt = time.perf_counter() - t1
    tokens = a.batch * a.seq * a.steps
    tps = tokens / dt
    peak_gb = torch.cuda.max_memory_allocated() / 1e9
    mfu6 = 6 * base_params * tps / (a.peak_tflops * 1e12)
    mfu4 = 4 * base_params * tps / (a.peak_tflops * 1e12)
    print(f"| {a.model:<12} | PEFT {peft.__version__} | batch {a.batch} x seq {a.seq} r={a.rank} | {tps:10.1f} tok/s | "
          f"peak {peak_gb:.1f} GB | MFU {100 * mfu6:.1f}% (6N) {100 * mfu4:.1f}% (4N) | loss {losses[0]:.3f} -> {losses[-1]:.3f} |",
          flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "batch": a.batch, "seq": a.seq, "rank": a.rank, "tokens_per_s": tps, "peak_gb": peak_gb,
                       "mfu_6n": mfu6, "mfu_4n": mfu4, "base_params": base_params, "peft": peft.__version__,
                       "transformers": transformers.__version__, "torch": torch.__version__,
                       "device": torch.cuda.get_device_name()}, f, indent=2)


if __name__ == "__main__":
    main()
