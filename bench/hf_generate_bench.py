#!/usr/bin/env python3
"""Hugging Face transformers `generate` speed on the GPU for the shapes of
`gemforge bench --synthetic NAME` (random bf16 weights built from the config).

Decode tokens/s = batch * (N - 1) / (time(generate N new tokens) - time(generate 1)),
so the prompt's prefill is not counted. Greedy, no early stop.

  python3 bench/hf_generate_bench.py --model gemma-7b --batch 1,32 --prompt 32 --gen 64 --json out.json
"""
import argparse
import json
import time

import torch
import transformers

# name: (model_type, hidden, layers, heads, kv, inter, head_dim, query_pre_attn_scalar, window, rope_scale)
# The same table as src/model/synthetic.cpp.
SHAPES = {
    "gemma-2b": ("gemma", 2048, 18, 8, 1, 16384, 256, 256, 0, 0),
    "gemma-7b": ("gemma", 3072, 28, 16, 16, 24576, 256, 256, 0, 0),
    "gemma2-2b": ("gemma2", 2304, 26, 8, 4, 9216, 256, 256, 4096, 0),
    "gemma2-9b": ("gemma2", 3584, 42, 16, 8, 14336, 256, 256, 4096, 0),
    "gemma2-27b": ("gemma2", 4608, 46, 32, 16, 36864, 128, 144, 4096, 0),
    "gemma3-270m": ("gemma3_text", 640, 18, 4, 1, 2048, 256, 256, 512, 0),
    "gemma3-1b": ("gemma3_text", 1152, 26, 4, 1, 6912, 256, 256, 512, 0),
    "gemma3-4b": ("gemma3_text", 2560, 34, 8, 4, 10240, 256, 256, 1024, 8),
    "gemma3-12b": ("gemma3_text", 3840, 48, 16, 8, 15360, 256, 256, 1024, 8),
    "gemma3-27b": ("gemma3_text", 5376, 62, 32, 16, 21504, 128, 168, 1024, 8),
}


def make_config(name):
    mt, hidden, layers, heads, kv, inter, hd, qpas, window, rope_scale = SHAPES[name]
    common = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                  intermediate_size=inter, head_dim=hd, max_position_embeddings=8192, bos_token_id=2, eos_token_id=1,
                  pad_token_id=0, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)
    if mt == "gemma":
        return transformers.GemmaConfig(vocab_size=256000, **common)
    if mt == "gemma2":
        return transformers.Gemma2Config(vocab_size=256000, query_pre_attn_scalar=qpas, sliding_window=window,
                                         attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **common)
    # (The linear RoPE scaling of the 4B+ global layers does not change the speed; left out.)
    return transformers.Gemma3TextConfig(vocab_size=262144, query_pre_attn_scalar=qpas, sliding_window=window, **common)


def build_model(name, **kwargs):
    """(config, model with random bf16 weights on the GPU, seconds it took), seeded."""
    torch.manual_seed(0)
    cfg = make_config(name)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, **kwargs)
    return cfg, model, time.perf_counter() - t0


def timed_generate(model, ids, new_tokens):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    assert out.shape[1] == ids.shape[1] + new_tokens, out.shape
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(SHAPES))
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg, model, built_s = build_model(a.model)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.model}: {params / 1e9:.2f} B parameters, built in {built_s:.1f} s "
          f"(transformers {transformers.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()})", flush=True)
    res = {"model": a.model, "params": params, "transformers": transformers.__version__, "torch": torch.__version__,
           "device": torch.cuda.get_device_name(), "prompt": a.prompt, "gen": a.gen, "batch": {}}
    with torch.inference_mode():
        for b in [int(x) for x in a.batch.split(",") if x]:
            ids = torch.randint(10, cfg.vocab_size, (b, a.prompt), device="cuda")
            timed_generate(model, ids, 4)  # warm-up
            t1 = timed_generate(model, ids, 1)
            tn = timed_generate(model, ids, a.gen)
            step = (tn - t1) / (a.gen - 1)
            tps = b / step
            print(f"| {a.model:<12} | transformers generate | batch {b:>3} | {tps:10.1f} tok/s | {1e3 * step:8.2f} ms/step |",
                  flush=True)
            res["batch"][str(b)] = {"tokens_per_s": tps, "ms_per_step": 1e3 * step}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
