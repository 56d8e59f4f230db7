#!/usr/bin/env python3
"""PyTorch + PEFT references for gemforge's LoRA trainer (tests/finetune_peft_test.cpp).

For each trainable shared fixture (../shared/fixtures/hf-tiny) this writes
OUT/lora-<fixture>/ with
  adapter/                 a PEFT adapter (r=4, alpha=8, all seven projections,
                           A from PEFT's init, B random so every gradient is nonzero)
                           saved by PeftModel.save_pretrained: gemforge must load it
  lora_reference.safetensors
    input_ids [T] int32, loss_mask [T] int32      one sequence (mask: which tokens are targets)
    logits [T, V] float32                         the adapted model's logits
    loss [1] float32                              mean NLL over the target tokens
    grad.<PEFT key> float32                       d loss / d each LoRA tensor (autograd)
    train_ids [N, S] int32, train_mask [N, S]     the training set of the loss curve
    curve [STEPS] float32                         per-step training loss of a manual loop:
                                                  full batch (all N sequences each step), loss =
                                                  sum NLL / target tokens, clip_grad_norm_,
                                                  torch.optim.AdamW, cosine schedule with warmup
  meta.json                                       fixture name and hyperparameters, and
                                                  gemforge_adapter_in_peft: max logit error of the
                                                  adapter gemforge trained (tests/lora_references/
                                                  gemforge-lora-<fixture>/) loaded by PeftModel

The model is computed in float32 from the bf16 checkpoint with every buffer
rounded to bf16 first (model.to(bfloat16).float()), as the fixtures were
made; the script checks its base logits against the fixture's reference.

Run on a machine with torch, transformers 5.x and peft 0.21 (the device):
  python3 tests/lora_references/make_lora_reference.py --fixtures ../shared/fixtures --out tests/lora_references
then commit tests/lora_references/lora-*/ (small: a few hundred KB each).
"""
import argparse
import json
import math
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

FIXTURES = ["gemma1-mqa", "gemma1-mha", "gemma2", "gemma3-1b-like", "gemma3-4b-like", "gemma3-hd256", "gemma4-dense-31b-like",
            "gemma4-e2b-like"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HP = dict(rank=4, alpha=8.0, steps=50, lr=5e-3, warmup=5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip=1.0,
          n_train=4, seq=24, seed=1234)


def load(dir_):
    m = AutoModelForCausalLM.from_pretrained(dir_, dtype=torch.bfloat16, attn_implementation="eager")
    m = m.to(torch.bfloat16).float()  # buffers (embedding normaliser, inv_freq) rounded as the fixtures were
    m.eval()
    return m


def nll_sum(model, ids, mask):
    """Sum over target tokens t >= 1 (mask[t] = 1) of -log p(ids[t] | ids[<t]), and the count."""
    logits = model(input_ids=ids[None]).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1)
    tgt = ids[1:]
    sel = mask[1:].bool()
    return -(lp[torch.arange(len(tgt)), tgt][sel]).sum(), int(sel.sum()), logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for name in a.only or FIXTURES:
        fdir = os.path.join(a.fixtures, "hf-tiny", name)
        out = os.path.join(a.out, "lora-" + name)
        if not os.path.isdir(fdir):
            print(f"{name}: no fixture at {fdir}, skipped")
            continue
        os.makedirs(out, exist_ok=True)
        g = torch.Generator().manual_seed(HP["seed"])
        model = load(fdir)
        ref = load_file(os.path.join(fdir, "reference.safetensors"))
        ids = ref["input_ids"].long()
        with torch.no_grad():
            base = model(input_ids=ids[None]).logits[0]
        err = ((base - ref["logits"]).abs() / ref["logits"].abs().clamp(min=1)).max().item()
        print(f"{name}: base logits vs fixture reference: {err:.2e}" + ("" if err < 1e-4 else "  <-- NOT as the fixture was computed"))

        cfg = LoraConfig(r=HP["rank"], lora_alpha=HP["alpha"], target_modules=TARGETS, lora_dropout=0.0, bias="none",
                         task_type="CAUSAL_LM")
        torch.manual_seed(HP["seed"])
        pm = get_peft_model(model, cfg)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        pm.save_pretrained(os.path.join(out, "adapter"))

        # One sequence: logits, loss and gradients.
        V = model.config.vocab_size if hasattr(model.config, "vocab_size") else base.shape[-1]
        T = HP["seq"]
        seq = ids[:T]
        mask = torch.ones(T, dtype=torch.int32)
        mask[:5] = 0
        pm.zero_grad()
        s, n, logits = nll_sum(pm, seq, mask)
        loss = s / n
        loss.backward()
        tensors = {"input_ids": seq.int(), "loss_mask": mask, "logits": logits.detach().float().contiguous(),
                   "loss": loss.detach().reshape(1).float()}
        for k, p in pm.named_parameters():
            if p.requires_grad:
                key = k.replace(".default", "")
                tensors["grad." + key] = p.grad.detach().float().contiguous()

        # Loss curve: full-batch steps from the saved adapter.
        train_ids = torch.randint(3, base.shape[-1], (HP["n_train"], T), generator=g)
        train_ids[:, 0] = 2
        train_mask = torch.ones(HP["n_train"], T, dtype=torch.int32)
        train_mask[:, :4] = 0
        params = [p for p in pm.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
                                weight_decay=HP["weight_decay"])
        sched = get_cosine_schedule_with_warmup(opt, HP["warmup"], HP["steps"])
        curve = []
        for step in range(HP["steps"]):
            opt.zero_grad()
            tot = sum(int(m[1:].sum()) for m in train_mask)
            total = 0.0
            for i in range(HP["n_train"]):
                s, _, _ = nll_sum(pm, train_ids[i], train_mask[i])
                (s / tot).backward()
                total += s.item()
            curve.append(total / tot)
            torch.nn.utils.clip_grad_norm_(params, HP["clip"])
            opt.step()
            sched.step()
        print(f"{name}: loss {curve[0]:.4f} -> {curve[-1]:.4f}")
        tensors.update({"train_ids": train_ids.int(), "train_mask": train_mask, "curve": torch.tensor(curve, dtype=torch.float32)})
        save_file(tensors, os.path.join(out, "lora_reference.safetensors"))
        meta = dict(HP, fixture=name, torch=torch.__version__, base_logits_vs_fixture=err)
        import peft, transformers
        meta.update(transformers=transformers.__version__, peft=peft.__version__)
        # gemforge -> PEFT: the adapter gemforge trained (tests/finetune_peft_test.cpp,
        # WriteGemforgeAdapterForPeft) loaded by PeftModel gives gemforge's logits.
        gdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gemforge-lora-" + name)
        if os.path.isdir(gdir):
            from peft import PeftModel
            gm = PeftModel.from_pretrained(load(fdir), gdir)
            g = load_file(os.path.join(gdir, "logits.safetensors"))
            with torch.no_grad():
                pl = gm(input_ids=g["input_ids"].long()[None]).logits[0]
            gerr = ((pl - g["logits"]).abs() / g["logits"].abs().clamp(min=1)).max().item()
            meta["gemforge_adapter_in_peft"] = gerr
            print(f"{name}: gemforge adapter loaded by PEFT: max logit error {gerr:.2e}" + ("" if gerr < 1e-3 else "  <-- FAIL"))
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()
