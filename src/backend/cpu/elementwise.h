// Element-wise and row-wise CPU kernels (compiled per variant, so their
// float expressions get the variant's FMA and vector width).
#pragma once
#include <cstdint>

#include "backend/cpu/isa.h"

GF_CPU_BEGIN

// gate[i] = gelu_tanh(gate[i]) * up[i], with gelu_tanh(g) = 0.5 g (1 + tanh(u)),
// u = sqrt(2/pi) (g + 0.044715 g^3), computed as g * sigmoid(2u) with a
// polynomial exp (max relative error ~2e-7; 8 lanes at a time in the AVX2 and
// AVX-512 variants, the same operations one lane at a time elsewhere, so the result of an element
// never depends on where it sits in the array).
void gelu_tanh_mul(float* gate, const float* up, int64_t n);

// y[i] = x[i] / sqrt(mean(x^2) + eps) (times w[i] where w is not null), n
// elements; the sum of squares in double. y may be x.
void rms_norm_row(const float* x, float* y, const float* w, int64_t n, float eps);

// Rotary embedding of one token's heads (NeoX halves): for each head v and
// i < head_dim / 2, (v[i], v[i + half]) rotated by the angle whose cosine and
// sine are cs[i] and sn[i].
void rope_token(float* x, int64_t heads, int head_dim, const float* cs, const float* sn);

GF_CPU_END
