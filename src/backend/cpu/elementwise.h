// Element-wise CPU kernels whose libm versions dominate a profile.
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

GF_CPU_END
