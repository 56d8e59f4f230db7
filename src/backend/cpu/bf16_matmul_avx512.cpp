// BF16 weights times float32 activations with AVX512-BF16 (vdpbf16ps).
// Each activation is split into two bf16 values, hi = bf16(x) and
// lo = bf16(x - hi), so x is carried to ~2^-18 relative (llama.cpp instead
// rounds x to one bf16, 2^-9); vdpbf16ps multiplies exactly and accumulates
// in float32. The weights are used as stored: no bf16 -> f32 conversion.
// Per (row, token) the operations are the same in the decode dot and in the
// prefill tile (two accumulators, hi and lo, over 32-element chunks, then one
// horizontal sum and a scalar tail), so a token's result does not depend on
// the batch it is in.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/simd_avx2.h"
#include "core/half.h"
#include "core/thread_pool.h"

GF_CPU_BEGIN

#if GF_CPU_AVX512
namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

using simd::hsum16;
inline __m512bh bh(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }

struct SplitActs {
  std::vector<uint16_t> hi, lo;  // [T][in]
};

void split(const float* x, int64_t T, int64_t in, SplitActs& a) {
  a.hi.assign(static_cast<size_t>(T * in), 0);
  a.lo.assign(static_cast<size_t>(T * in), 0);
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * in;
    for (int64_t i = 0; i + 32 <= in; i += 32) {
      const __m512 a0 = _mm512_loadu_ps(xt + i), a1 = _mm512_loadu_ps(xt + i + 16);
      const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(a1, a0);  // elements 0-15 from a0, 16-31 from a1
      auto widen = [](__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); };
      const __m512 h0 = widen(_mm512_castsi512_si256(h)), h1 = widen(_mm512_extracti64x4_epi64(h, 1));
      const __m512i l = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(a1, h1), _mm512_sub_ps(a0, h0));
      _mm512_storeu_si512(a.hi.data() + t * in + i, h);
      _mm512_storeu_si512(a.lo.data() + t * in + i, l);
    }
  }
}

// One row, one token.
float dot_split(const uint16_t* w, const uint16_t* xh, const uint16_t* xl, const float* x, int64_t n) {
  __m512 ah = _mm512_setzero_ps(), al = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(w + i) + 4096, _MM_HINT_T0);  // as dot_bf16 (matmul.cpp)
    const __m512bh wv = bh(w + i);
    ah = _mm512_dpbf16_ps(ah, wv, bh(xh + i));
    al = _mm512_dpbf16_ps(al, wv, bh(xl + i));
  }
  float s = hsum16(_mm512_add_ps(ah, al));
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

// R rows x K tokens, each (row, token) exactly as dot_split.
template <int R, int K>
void tile(const uint16_t* const* w, const SplitActs& a, const float* x, int64_t t0, int64_t n, float* y, int64_t out, int64_t row0) {
  __m512 ah[R][K], al[R][K];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) ah[r][k] = al[r][k] = _mm512_setzero_ps();
  const uint16_t* xh[K];
  const uint16_t* xl[K];
  for (int k = 0; k < K; ++k) xh[k] = a.hi.data() + (t0 + k) * n, xl[k] = a.lo.data() + (t0 + k) * n;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512bh wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = bh(w[r] + i);
#pragma GCC unroll 2
    for (int k = 0; k < K; ++k) {
      const __m512bh h = bh(xh[k] + i), l = bh(xl[k] + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        ah[r][k] = _mm512_dpbf16_ps(ah[r][k], wv[r], h);
        al[r][k] = _mm512_dpbf16_ps(al[r][k], wv[r], l);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) {
      float s = hsum16(_mm512_add_ps(ah[r][k], al[r][k]));
      for (int64_t j = i; j < n; ++j) s += bf16_to_f32(w[r][j]) * x[(t0 + k) * n + j];
      y[(t0 + k) * out + row0 + r] = s;
    }
}

#pragma GCC diagnostic pop

}  // namespace

bool matmul_bf16_split(const TensorView& W, const float* x, int64_t T, float* y) {
  if (W.dtype != DType::BF16) return false;
  const int64_t out = W.rows(), in = W.cols();
  thread_local SplitActs split_acts;  // reused between calls of this thread
  SplitActs& a = split_acts;          // the workers below must see this thread's copy
  split(x, T, in, a);
  auto row = [&](int64_t r) { return reinterpret_cast<const uint16_t*>(W.row(r)); };
  for_row_blocks(W, T, 8, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    int64_t r = r0;
    for (; r + 4 <= r1 && T >= 2; r += 4) {  // 4 rows x token pairs
      const uint16_t* w[4] = {row(r), row(r + 1), row(r + 2), row(r + 3)};
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2) tile<4, 2>(w, a, x, t, in, y, out, r);
      for (; t < t1; ++t) tile<4, 1>(w, a, x, t, in, y, out, r);
    }
    for (; r < r1; ++r)
      for (int64_t t = t0; t < t1; ++t) y[t * out + r] = dot_split(row(r), a.hi.data() + t * in, a.lo.data() + t * in, x + t * in, in);
  });
  return true;
}

#else
bool matmul_bf16_split(const TensorView&, const float*, int64_t, float*) { return false; }
#endif

GF_CPU_END
