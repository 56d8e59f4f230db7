#!/usr/bin/env python3
"""Write a GGUF of random weights with the shape of `gemforge --synthetic NAME`.

For peers that read GGUF (llama.cpp: llama-bench, llama-batched-bench,
llama-server): the same model shapes as src/model/synthetic.cpp, bf16 (or f16)
matrices and float32 norms, with the metadata keys and tensor names that
llama.cpp's converter (convert_hf_to_gguf.py, classes GemmaModel, Gemma2Model,
Gemma3Model) writes for `gemma`, `gemma2` and `gemma3`, and the Gemma
tokenizer (from a tokenizer.json, .xz allowed) as an SPM ("llama") vocabulary
so that llama-server can tokenize text.

Needs only numpy. Tensors are streamed to the file: the random values come
from a few pools of random numbers (one per fan-in, uniform with
std 1/sqrt(fan_in) as in synthetic.cpp), copied out at random offsets, so a
24 GB file is written at disk speed. Speed does not depend on the values.

  python3 bench/make_synthetic_gguf.py gemma2-9b /tmp/gemma2-9b.gguf \
      --tokenizer ../shared/fixtures/tokenizers/gemma_tokenizer.json.xz
  python3 bench/make_synthetic_gguf.py --tiny gemma3-1b /tmp/tiny.gguf --tokenizer ...   # 2 layers, small dims
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import struct
import sys
import time

import numpy as np

# name: (type, hidden, layers, heads, kv_heads, intermediate, head_dim, query_pre_attn_scalar, window, rope_scale)
# Must equal src/model/synthetic.cpp's table (checked below when that file is found).
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

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# ggml tensor types and llama file types
GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K = 0, 1, 30, 8, 12, 14
# --dtype: (matrix type, llama file type). q4_k_m follows llama.cpp's Q4_K_M mix (layer_type below).
FTYPE = {"bf16": (GGML_BF16, 32), "f16": (GGML_F16, 1), "q8_0": (GGML_Q8_0, 7), "q4_k_m": (GGML_Q4_K, 15)}
# Block types: (elements, bytes, offsets of the float16 scales, |scale| so that values reach about +-amplitude).
BLOCKS = {GGML_Q8_0: (32, 34, (0,), 1 / 127), GGML_Q4_K: (256, 144, (0, 2), 1 / 945), GGML_Q6_K: (256, 210, (208,), 1 / 4096)}
ALIGN = 32


def check_against_cpp() -> None:
    cpp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "model", "synthetic.cpp")
    if not os.path.exists(cpp):
        return
    text = open(cpp, encoding="utf-8").read()
    for m in re.finditer(r'\{"([\w.-]+)", \{"(\w+)", ([\d, .]+)\}\}', text):
        nums = tuple(float(x) for x in m.group(3).split(","))
        ours = SHAPES.get(m.group(1))
        if ours is None or ours[0] != m.group(2) or tuple(float(x) for x in ours[1:]) != nums:
            sys.exit(f"shape table differs from {cpp} for {m.group(1)}: update SHAPES")


def config(name: str, tiny: bool) -> dict:
    t, H, L, nh, kv, ff, hd, qpas, win, rs = SHAPES[name]
    if tiny:  # same structure, small: 2 (gemma3: 6) layers, narrow
        H, L, ff, hd, qpas = 256, (6 if t == "gemma3_text" else 2), 512, 64, 64
        nh, kv = min(nh, 4), min(kv, 4)
        win = min(win, 64) if win else 0
    arch = {"gemma": "gemma", "gemma2": "gemma2", "gemma3_text": "gemma3"}[t]
    vocab = 262144 if arch == "gemma3" else 256000
    return dict(arch=arch, hidden=H, layers=L, heads=nh, kv=kv, ff=ff, head_dim=hd, qpas=qpas, window=win,
                rope_scale=rs, vocab=vocab, ctx={"gemma": 8192, "gemma2": 8192}.get(arch, 131072 if rs else 32768))


# ---------------------------------------------------------------- tokenizer

def load_vocab(path: str, n_vocab: int):
    """tokens, scores, types as llama.cpp's SPM converter would write them."""
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        tj = json.load(f)
    model = tj["model"]
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = np.full(n_vocab, -10000.0, dtype=np.float32)
    types = np.full(n_vocab, 5, dtype=np.int32)  # 5 = unused
    for piece, i in model["vocab"].items():
        if i < n_vocab:
            tokens[i] = piece
            types[i] = 1  # normal
    # SPM merges the adjacent pair whose merged piece scores highest: a piece's
    # score is minus the rank of the BPE merge that makes it, which gives BPE's ids.
    for rank, m in enumerate(model.get("merges", [])):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        i = model["vocab"].get(a + b)
        if i is not None and i < n_vocab and scores[i] == -10000.0:
            scores[i] = -float(rank)
    for i, p in enumerate(tokens):
        if types[i] == 1 and scores[i] == -10000.0:
            scores[i] = 0.0 if len(p) == 1 else -1e6 - i  # single characters; pieces no merge makes
        if re.fullmatch(r"<0x[0-9A-F]{2}>", p):
            types[i], scores[i] = 6, 0.0  # byte
    unk = model["vocab"].get(model.get("unk_token") or "<unk>")
    if unk is not None:
        types[unk] = 2
    for at in tj.get("added_tokens", []):
        i, c = at["id"], at["content"]
        if i >= n_vocab:
            continue
        looks_special = c in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (c.startswith("<|") and c.endswith("|>")) \
            or (c.startswith("<unused") and c.endswith(">"))
        if at.get("special") or looks_special:
            types[i] = 3  # control
        else:
            types[i] = 4  # user-defined, spaces pre-normalised as the converter does
            c = c.replace("\u2581", " ")
        if unk is not None and i == unk:
            types[i] = 2
        tokens[i] = c
        scores[i] = -1000.0
    return tokens, scores, types


# ---------------------------------------------------------------- GGUF writing

def s(x: str) -> bytes:
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, value) -> bytes:
    out = s(key) + struct.pack("<I", vtype)
    if vtype == STR:
        return out + s(value)
    fmt = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q"}[vtype]
    return out + struct.pack(fmt, value)


def kv_array(key: str, etype: int, values) -> bytes:
    out = s(key) + struct.pack("<IIQ", ARR, etype, len(values))
    if etype == STR:
        return out + b"".join(s(v) for v in values)
    if etype == F32:
        return out + np.asarray(values, dtype="<f4").tobytes()
    if etype == I32:
        return out + np.asarray(values, dtype="<i4").tobytes()
    raise ValueError(etype)


def metadata(c: dict, name: str, ftype: int, vocab) -> list[bytes]:
    a = c["arch"]
    m = [kv("general.architecture", STR, a), kv("general.name", STR, f"synthetic {name}"),
         kv("general.file_type", U32, ftype),
         kv(f"{a}.context_length", U32, c["ctx"]), kv(f"{a}.embedding_length", U32, c["hidden"]),
         kv(f"{a}.block_count", U32, c["layers"]), kv(f"{a}.feed_forward_length", U32, c["ff"]),
         kv(f"{a}.attention.head_count", U32, c["heads"]), kv(f"{a}.attention.head_count_kv", U32, c["kv"]),
         kv(f"{a}.attention.layer_norm_rms_epsilon", F32, 1e-6),
         kv(f"{a}.attention.key_length", U32, c["head_dim"]), kv(f"{a}.attention.value_length", U32, c["head_dim"])]
    if a == "gemma2":
        m += [kv("gemma2.attn_logit_softcapping", F32, 50.0), kv("gemma2.final_logit_softcapping", F32, 30.0),
              kv("gemma2.attention.sliding_window", U32, c["window"])]
    if a == "gemma3":
        m += [kv("gemma3.rope.freq_base", F32, 1e6), kv("gemma3.rope.freq_base_swa", F32, 1e4),
              kv("gemma3.attention.sliding_window", U32, c["window"])]
        if c["rope_scale"]:
            m += [kv("gemma3.rope.scaling.type", STR, "linear"), kv("gemma3.rope.scaling.factor", F32, float(c["rope_scale"]))]
    if vocab is not None:
        tokens, scores, types = vocab
        m += [kv("tokenizer.ggml.model", STR, "llama"), kv("tokenizer.ggml.pre", STR, "default"),
              kv_array("tokenizer.ggml.tokens", STR, tokens), kv_array("tokenizer.ggml.scores", F32, scores),
              kv_array("tokenizer.ggml.token_type", I32, types),
              kv("tokenizer.ggml.bos_token_id", U32, 2), kv("tokenizer.ggml.eos_token_id", U32, 1),
              kv("tokenizer.ggml.unknown_token_id", U32, 3), kv("tokenizer.ggml.padding_token_id", U32, 0),
              kv("tokenizer.ggml.add_bos_token", BOOL, True), kv("tokenizer.ggml.add_eos_token", BOOL, False),
              kv("tokenizer.ggml.add_space_prefix", BOOL, False)]
        if a == "gemma":
            m += [kv("tokenizer.ggml.eot_token_id", U32, 107)]
    return m


def tensor_list(c: dict):
    """(name, gguf dims innermost first, kind, fan_in); kind 'w' = matrix, 'n' = float32 norm."""
    H, V, hd = c["hidden"], c["vocab"], c["head_dim"]
    qd, kvd, ff = c["heads"] * hd, c["kv"] * hd, c["ff"]
    t = [("token_embd.weight", [H, V], "e", 0)]
    for i in range(c["layers"]):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", [H], "n", 0),
              (p + "attn_q.weight", [H, qd], "w", H), (p + "attn_k.weight", [H, kvd], "w", H),
              (p + "attn_v.weight", [H, kvd], "w", H), (p + "attn_output.weight", [qd, H], "w", qd)]
        if c["arch"] == "gemma3":
            t += [(p + "attn_q_norm.weight", [hd], "n", 0), (p + "attn_k_norm.weight", [hd], "n", 0)]
        if c["arch"] != "gemma":
            t += [(p + "post_attention_norm.weight", [H], "n", 0)]
        t += [(p + "ffn_norm.weight", [H], "n", 0),
              (p + "ffn_gate.weight", [H, ff], "w", H), (p + "ffn_up.weight", [H, ff], "w", H),
              (p + "ffn_down.weight", [ff, H], "w", ff)]
        if c["arch"] != "gemma":
            t += [(p + "post_ffw_norm.weight", [H], "n", 0)]
    t.append(("output_norm.weight", [H], "n", 0))
    return t


POOL = 1 << 24  # random values per pool (32 MiB of bf16)


def layer_type(name: str, base: int, layers: int) -> int:
    """llama.cpp's Q4_K_M: Q6_K for the (tied) embedding/output, and for attn_v and ffn_down of the
    layers use_more_bits picks (the first and last eighth, every third between); Q4_K elsewhere."""
    if base != GGML_Q4_K:
        return base
    if name == "token_embd.weight":
        return GGML_Q6_K
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        i = int(name.split(".")[1])
        if i < layers // 8 or i >= 7 * layers // 8 or (i - layers // 8) % 3 == 2:
            return GGML_Q6_K
    return GGML_Q4_K


def tensor_bytes(gtype: int, n: int) -> int:
    if gtype in BLOCKS:
        be, bb, _, _ = BLOCKS[gtype]
        return n // be * bb
    return n * (4 if gtype == GGML_F32 else 2)


def make_block_pool(rng, amplitude: float, gtype: int) -> np.ndarray:
    """Random blocks (as bytes) whose float16 scales are finite: speed does not depend on the values."""
    be, bb, halves, per = BLOCKS[gtype]
    nblocks = POOL // be
    b = rng.integers(0, 256, size=(nblocks, bb), dtype=np.uint8)
    for off in halves:
        d = (rng.uniform(0.5, 1.0, nblocks) * amplitude * per).astype("<f2")
        b[:, off:off + 2] = d.view(np.uint8).reshape(nblocks, 2)
    return b.reshape(-1)


def make_pool(rng, amplitude: float, dtype: str) -> np.ndarray:
    x = rng.uniform(-amplitude, amplitude, size=POOL).astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    u = x.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--tokenizer", help="tokenizer.json(.xz) to embed (without it gemforge loads the file, llama.cpp does not)")
    ap.add_argument("--dtype", choices=sorted(FTYPE), default="bf16",
                    help="matrix type: bf16, f16, or random blocks of q8_0 / llama.cpp's q4_k_m mix")
    ap.add_argument("--tiny", action="store_true", help="small dims, few layers (for load tests)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    check_against_cpp()
    t0 = time.time()
    c = config(a.name, a.tiny)
    wtype, ftype = FTYPE[a.dtype]
    vocab = load_vocab(a.tokenizer, c["vocab"]) if a.tokenizer else None
    tensors = tensor_list(c)
    meta = metadata(c, a.name, ftype, vocab)

    header = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
    for m in meta:
        header += m
    offsets, off = [], 0
    gtypes = []
    for name, dims, kind, _ in tensors:
        gtype = GGML_F32 if kind == "n" else layer_type(name, wtype, c["layers"])
        gtypes.append(gtype)
        nbytes = tensor_bytes(gtype, int(np.prod(dims)))
        header += s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", gtype, off)
        offsets.append((off, nbytes))
        off += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    header += b"\0" * (-len(header) % ALIGN)

    rng = np.random.default_rng(a.seed)
    pools: dict[tuple, np.ndarray] = {}
    total = 0
    with open(a.out, "wb", buffering=0) as f:
        f.write(header)
        for (name, dims, kind, fan_in), (o, nbytes), gtype in zip(tensors, offsets, gtypes):
            assert f.tell() == len(header) + o
            if kind == "n":  # GGUF norms hold 1 + w (the converter adds Gemma's +1)
                f.write((1.0 + rng.uniform(-0.1, 0.1, nbytes // 4)).astype("<f4").tobytes())
            else:
                amp = 0.05 if kind == "e" else float(np.sqrt(3.0 / fan_in))
                if (amp, gtype) not in pools:
                    pools[(amp, gtype)] = make_block_pool(rng, amp, gtype) if gtype in BLOCKS else make_pool(rng, amp, a.dtype)
                pool = pools[(amp, gtype)]
                unit = BLOCKS[gtype][1] if gtype in BLOCKS else 1  # copy whole blocks
                pool_units = pool.nbytes // (unit * pool.itemsize)
                left = nbytes // (unit * pool.itemsize)
                while left:
                    k = min(left, pool_units // 2)
                    start = int(rng.integers(0, pool_units - k + 1))
                    f.write(memoryview(pool[start * unit:(start + k) * unit]).cast("B"))
                    left -= k
            f.write(b"\0" * (-nbytes % ALIGN))
            total += nbytes
    dt = time.time() - t0
    print(f"{a.out}: {c['arch']} {a.name}{' (tiny)' if a.tiny else ''}, {len(tensors)} tensors, "
          f"{total / 1e9:.2f} GB of weights ({a.dtype}), {dt:.1f} s ({total / 1e9 / max(dt, 1e-9):.2f} GB/s)")


if __name__ == "__main__":
    main()
