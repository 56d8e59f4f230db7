#!/usr/bin/env python3
"""Hugging Face reference outputs for shapes the shared fixtures do not cover.

Runs transformers (float32 eager attention) on tiny random-weight Gemma 1-3
checkpoints and writes, per case, the same files as ../shared/fixtures/hf-tiny:
config.json (transformers 5 form), config.hub-style.json (the older form),
model.safetensors (bf16), reference.safetensors (input_ids, logits,
greedy_ids, greedy_logits) and meta.json. The checkpoint is saved in bf16 and
loaded back in bf16 before `.float()`, so buffers (inv_freq, the embedding
normaliser) are rounded exactly as a user's bf16 checkpoint rounds them.

Run where transformers and torch are installed (the device machine):
  python3 tests/references/make_references.py --out DIR [--only NAME ...]
and copy DIR/* to tests/references/. Each case picks the first seed whose
greedy path has a top-1/top-2 gap of at least 0.05, so greedy ids are a
meaningful check rather than a coin toss between near-ties.

Buffers: `model.to(bfloat16)` rounds every buffer (the embedding normaliser
and the rotary inv_freq), and the default --load memory computes with that
model, as the shared fixtures were made; gemforge follows that rule. Reloading
the saved checkpoint with from_pretrained (--load auto|bf16) rounds the
normaliser too, but transformers 5.17 keeps inv_freq in float32 there
(measured: logits then differ by up to 4e-2 at 100+ tokens on these shapes).
"""
import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, CONFIG_MAPPING

COMMON = dict(vocab_size=256, rms_norm_eps=1e-6, max_position_embeddings=4096, pad_token_id=0, bos_token_id=2,
              eos_token_id=1, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)

# name -> (model_type, config kwargs in the hub form, prompt tokens). Each covers
# shapes the shared fixtures do not: hidden sizes whose square roots are not
# exact in bf16, q dim != hidden, odd head counts, head_dim 16/48/80/128,
# windows that do not divide the prompt, prompts past 100 tokens.
CASES = {
    "gemma1-h96-hd16": ("gemma", dict(hidden_size=96, intermediate_size=192, num_attention_heads=6, num_key_value_heads=6,
                                      head_dim=16, num_hidden_layers=3, rope_theta=10000.0), 100),
    "gemma1-h80-hd48-mqa": ("gemma", dict(hidden_size=80, intermediate_size=224, num_attention_heads=3,
                                          num_key_value_heads=1, head_dim=48, num_hidden_layers=3, rope_theta=10000.0), 112),
    # Gemma 2 27B's rule: query_pre_attn_scalar = hidden / heads (here 96/3 = 32), not head_dim (48).
    "gemma2-h96-hd48-qpas-27b-rule": ("gemma2", dict(hidden_size=96, intermediate_size=128, num_attention_heads=3,
                                                     num_key_value_heads=1, head_dim=48, num_hidden_layers=4,
                                                     query_pre_attn_scalar=32, sliding_window=7, attn_logit_softcapping=2.0,
                                                     final_logit_softcapping=8.0, rope_theta=10000.0), 100),
    "gemma2-h120-hd16": ("gemma2", dict(hidden_size=120, intermediate_size=160, num_attention_heads=6, num_key_value_heads=3,
                                       head_dim=16, num_hidden_layers=4, query_pre_attn_scalar=16, sliding_window=11,
                                       attn_logit_softcapping=3.0, final_logit_softcapping=10.0, rope_theta=10000.0), 128),
    "gemma3-h96-hd16": ("gemma3_text", dict(hidden_size=96, intermediate_size=128, num_attention_heads=6,
                                            num_key_value_heads=3, head_dim=16, num_hidden_layers=7,
                                            query_pre_attn_scalar=16, sliding_window=5, sliding_window_pattern=6,
                                            rope_theta=1000000.0, rope_local_base_freq=10000.0), 120),
    "gemma3-h150-hd80-linear": ("gemma3_text", dict(hidden_size=150, intermediate_size=128, num_attention_heads=3,
                                                    num_key_value_heads=1, head_dim=80, num_hidden_layers=4,
                                                    query_pre_attn_scalar=80, sliding_window=9, sliding_window_pattern=3,
                                                    rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                                    rope_scaling={"rope_type": "linear", "factor": 8.0}), 130),
    "gemma3-h144-hd128": ("gemma3_text", dict(hidden_size=144, intermediate_size=128, num_attention_heads=2,
                                              num_key_value_heads=1, head_dim=128, num_hidden_layers=3,
                                              query_pre_attn_scalar=128, sliding_window=13, sliding_window_pattern=3,
                                              rope_theta=1000000.0, rope_local_base_freq=10000.0), 101),
}
GREEDY = 16
MIN_GAP = 0.05


def randomize(model, seed):
    """Weights of O(1) activations; norm weights around their default so a missing (1 + w) shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm weights, stored as w and used as (1 + w)
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


@torch.no_grad()
def reference(model, ids):
    full = model(torch.tensor([ids]), use_cache=False).logits[0].float()
    out = model(torch.tensor([ids]), use_cache=True)
    cache, last = out.past_key_values, out.logits[0, -1].float()
    cache_vs_full = (last - full[-1]).abs().max().item()
    greedy, greedy_logits, gaps = [], [], []
    for _ in range(GREEDY):
        top2 = torch.topk(last, 2).values
        gaps.append((top2[0] - top2[1]).item())
        nxt = int(torch.argmax(last))
        greedy.append(nxt)
        greedy_logits.append(last.clone())
        out = model(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
        cache, last = out.past_key_values, out.logits[0, -1].float()
    return full, greedy, torch.stack(greedy_logits), min(gaps), cache_vs_full


def make(name, model_type, kwargs, prompt_len, out_root):
    hub = dict(COMMON, **kwargs)
    arch = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}[model_type]
    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    for seed in range(50):
        cfg = CONFIG_MAPPING[model_type](**hub)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        randomize(model, seed)
        model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
        loaded = model.float().eval() if LOAD == "memory" else load_as_user(d)
        g = torch.Generator().manual_seed(1000 + seed)
        ids = [2] + torch.randint(3, hub["vocab_size"], (prompt_len - 1,), generator=g).tolist()
        full, greedy, greedy_logits, gap, cache_vs_full = reference(loaded, ids)
        if gap >= MIN_GAP:
            break
    top2 = torch.topk(full, 2, dim=-1).values
    save_file({"input_ids": torch.tensor(ids, dtype=torch.int32), "logits": full.contiguous(),
               "greedy_ids": torch.tensor(greedy, dtype=torch.int32), "greedy_logits": greedy_logits.contiguous()},
              os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "config.hub-style.json"), "w") as f:
        json.dump(dict(hub, model_type=model_type, architectures=[arch], torch_dtype="bfloat16"), f, indent=1)
    meta = {"name": name, "transformers": transformers.__version__, "torch": torch.__version__,
            "prompt_tokens": prompt_len, "greedy_tokens": GREEDY, "weights_dtype": "bfloat16",
            "reference_compute": "float32, eager attention", "seed": seed,
            "min_top1_top2_gap": (top2[:, 0] - top2[:, 1]).min().item(), "min_greedy_path_gap": gap,
            "logit_std": full.std().item(), "cache_vs_full_maxdiff": cache_vs_full, "config_kwargs": hub,
            "config_hub_style_file": True, "generator": "tests/references/make_references.py", "load": LOAD}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: seed {seed}, greedy gap {gap:.3f}, cache-vs-full {cache_vs_full:.2e}", flush=True)


def load_as_user(d):
    """The checkpoint as a user loads it (dtype "auto": the checkpoint's bf16), computed in float32."""
    kw = {} if LOAD == "auto" else {"dtype": torch.bfloat16}
    return AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", **kw).float().eval()


def probe(dirs):
    """Which buffers a bf16 checkpoint rounds, and which loading path reproduces given references."""
    from safetensors.torch import load_file
    for d in dirs:
        for load in ("auto",):
            global LOAD
            LOAD = load
            m = load_as_user(d)
            bufs = {n: (str(b.dtype), b.flatten()[:3].tolist()) for n, b in m.named_buffers()}
            ref = load_file(os.path.join(d, "reference.safetensors"))
            with torch.no_grad():
                got = m(ref["input_ids"].long()[None], use_cache=False).logits[0].float()
            err = ((got - ref["logits"]).abs() / ref["logits"].abs().clamp(min=1)).max().item()
            print(f"probe {os.path.basename(d)} load={load}: max rel err vs its reference {err:.3g}; buffers {bufs}", flush=True)


LOAD = "memory"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--load", choices=["memory", "auto", "bf16"], default="memory",
                    help="compute with the bf16-cast model itself, as ../shared/fixtures were made (memory: every "
                         "buffer bf16-rounded), or reload the saved checkpoint with from_pretrained, default dtype "
                         "(auto) or dtype=torch.bfloat16 (transformers 5.17 then keeps inv_freq in float32)")
    ap.add_argument("--probe", nargs="*", help="only report buffers and errors of these reference folders")
    a = ap.parse_args()
    global LOAD
    LOAD = a.load
    if a.probe:
        probe(a.probe)
        return 0
    if not a.out:
        ap.error("--out is required")
    torch.use_deterministic_algorithms(True)
    for name, (mt, kw, n) in CASES.items():
        if not a.only or name in a.only:
            make(name, mt, kw, n, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
