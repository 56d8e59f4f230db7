// CPU attention over the paged KV cache (float32 K/V).
#pragma once
#include "backend/backend.h"
#include "backend/cpu/isa.h"

GF_CPU_BEGIN

// out[t] = softmax(q[t] K^T * scale (+ softcap; causal and sliding-window
// mask)) V over keys [lo, positions[t]] of token t's sequence, for every head.
// q and out are [T, heads * head_dim], dense.
void attention(const float* q, const KvPool& kv, const AttentionParams& p, const BatchLayout& layout, float* out);

GF_CPU_END
