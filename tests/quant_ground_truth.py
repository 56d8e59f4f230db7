#!/usr/bin/env python3
"""Ground truth for gemforge's dequantizers, from llama.cpp's own gguf-py.

Writes one GGUF file with, for each type, a tensor "<name>.q" of quantized
blocks and "<name>.ref" (F32) of gguf-py's dequantization of those blocks:
  rand.<TYPE>   random bytes (every bit pattern; scale fields made finite)
  quant.<TYPE>  random normal floats through gguf-py's quantizer (where it has one)
  <NAME>        every tensor of IN.gguf (optional; the C++ test puts rows of the
                real Gemma 3 270M there, written by gemforge's GGUF writer)
Usage: quant_ground_truth.py OUT.gguf [IN.gguf]
"""
import sys

import numpy as np
import gguf
from gguf import quants
from gguf.constants import GGMLQuantizationType as Q

# Byte offsets of the fp16 scale fields in each block (ggml-common.h).
F16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
ROWS, COLS = 3, 512


def dequant(blocks, t):
    if t == Q.Q8_K:  # gguf-py has no Q8_K dequantizer: f32 d, 256 int8, 16 int16 sums
        b = blocks.reshape(-1, 292)
        d = b[:, :4].copy().view(np.float32)
        q = b[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(blocks.shape[0], -1)
    return quants.dequantize(blocks, t)


def random_blocks(t, rng):
    elems, size = gguf.GGML_QUANT_SIZES[t]
    b = rng.integers(0, 256, size=(ROWS * COLS // elems, size), dtype=np.uint8)
    for off in F16_FIELDS.get(t, []):
        d = (rng.standard_normal(b.shape[0]) * 0.02).astype(np.float16)
        b[:, off:off + 2] = d.view(np.uint8).reshape(-1, 2)
    if t == Q.Q8_K:
        b[:, :4] = (rng.standard_normal(b.shape[0]) * 0.02).astype(np.float32).view(np.uint8).reshape(-1, 4)
    return b.reshape(ROWS, -1)


def main():
    out = sys.argv[1]
    extra = sys.argv[2] if len(sys.argv) > 2 else None
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(out, "ground_truth")
    for t in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K]:
        b = random_blocks(t, rng)
        w.add_tensor(f"rand.{t.name}.q", b, raw_dtype=t)
        w.add_tensor(f"rand.{t.name}.ref", dequant(b, t).astype(np.float32))
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    x[1] *= 100.0
    x[2, :64] = 0.0  # all-zero blocks
    for t in [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]:
        q = quants.quantize(x, t)
        w.add_tensor(f"quant.{t.name}.q", q, raw_dtype=t)
        w.add_tensor(f"quant.{t.name}.ref", quants.dequantize(q, t).astype(np.float32))
    if extra:
        for tensor in gguf.GGUFReader(extra).tensors:
            rows = np.asarray(tensor.data)
            t = tensor.tensor_type
            w.add_tensor(f"{tensor.name}.q", rows, raw_dtype=t)
            w.add_tensor(f"{tensor.name}.ref", quants.dequantize(rows, t).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("ok", out)


if __name__ == "__main__":
    main()
