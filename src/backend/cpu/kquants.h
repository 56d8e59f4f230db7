// K-quant (Q2_K..Q6_K) weights against Q8_K activations (int8, one scale per
// 256, sums per 16), as llama.cpp does. Every K type is first unpacked to one
// common super-block form (unsigned q, int16 scale and min per 16), so one
// integer kernel serves them all; prefill unpacks a row once and reuses it
// for many tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/cpu/isa.h"
#include "formats/tensor.h"

namespace gf::cpu {

// Activations of T tokens, each n elements (n a multiple of 256).
struct Q8KActs {
  int64_t n = 0;
  std::vector<int8_t> q;       // [T, n]
  std::vector<float> d;        // [T, n/256]
  std::vector<int16_t> bsums;  // [T, n/16]
  const int8_t* tq(int64_t t) const { return q.data() + t * n; }
  const float* td(int64_t t) const { return d.data() + t * (n / 256); }
  const int16_t* tb(int64_t t) const { return bsums.data() + t * (n / 16); }
};
// w = d * sc[g] * q - dmin * mn[g] for element e of group g = e / 16.
// sc is stored expanded: sc[k] is the 16 int16 madd weights for elements
// 32k..32k+31 (lanes 0-7: group 2k, lanes 8-15: group 2k+1).
struct alignas(32) KBlock {
  uint8_t q[256];
  int16_t sc[8][16];
  int16_t mn[16];
  float d, dmin;
};

// Prefill with 512-bit registers (the AVX-512 variant): the activations of token
// pairs interleaved so one zmm holds a 32-byte chunk of both tokens; every
// lane does the integer and float operations of kquant_dot4 (same bits).
struct Q8KPairs {
  int64_t n = 0, pairs = 0;
  std::vector<int8_t> q;       // [pairs][n/32][64]
  std::vector<int16_t> bsums;  // [pairs][n/256][32]
  std::vector<float> d;        // [pairs][n/256][2]
};

}  // namespace gf::cpu

GF_CPU_BEGIN

// Quantizes T rows of x (multithreaded over tokens).
void quantize_q8k(const float* x, int64_t T, int64_t n, Q8KActs& a);

bool kquant_supported(DType t);
void kquant_unpack_row(DType t, const uint8_t* row, int64_t nsb, KBlock* out);
// out[k] = row · token (t0 + k) for k < N (N = 1 or 4).
void kquant_dot1(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t, float* out);
void kquant_dot4(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t0, float* out);

bool kquant_pairs_available();
void pair_q8k(const Q8KActs& a, int64_t T, Q8KPairs& p);  // an odd last token is paired with itself
// y[t * stride] = row · token t for the tokens of pairs [p0, p0 + np), np = 1 or 2, t < T.
void kquant_dot_pairs(const KBlock* w, int64_t nsb, const Q8KPairs& p, int64_t p0, int np, int64_t T, float* y, int64_t stride);

// Decode (T = 1) without unpacking: fused per-type kernels straight from the
// GGML blocks. Returns false where no fused kernel exists for the type.
bool kquant_dot_fused(DType t, const uint8_t* row, int64_t nsb, const Q8KActs& a, int64_t tok, float* out);

GF_CPU_END
