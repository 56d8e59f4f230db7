// Decode matvec for the 32-element block types (integer dot products with
// int8 activations, one float scale per block, as llama.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/quant_acts.h"
#include "formats/ggml_blocks.h"
#include "backend/cpu/simd_avx2.h"

GF_CPU_BEGIN

void quantize_acts(const float* x, int64_t n, QActs& a) {
  a.q.resize(static_cast<size_t>(n));
  a.d.resize(static_cast<size_t>(n / 32));
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    a.d[static_cast<size_t>(b)] = d;
    for (int i = 0; i < 32; ++i) a.q[static_cast<size_t>(b * 32 + i)] = static_cast<int8_t>(std::nearbyint(xb[i] * id));
  }
}

#if GF_CPU_AVX2
namespace {
using namespace simd;

// One row at a time: interleaving 4 rows (4 accumulators, shared activation
// loads) was slower on a DRAM-resident matrix (the prefetcher follows one
// stream better) and no faster in cache.
float dot_q8_0(const uint8_t* w, const QActs& a, int64_t nb) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(w);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(b + i) + 4096, _MM_HINT_T0);  // see dot_bf16 (matmul.cpp)
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + i * 32));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i8(q, y)), _mm256_set1_ps(h2f(b[i].d) * a.d[static_cast<size_t>(i)]), acc);
  }
  return hsum(acc);
}

float dot_q4_0(const uint8_t* w, const QActs& a, int64_t nb) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(b + i) + 4096, _MM_HINT_T0);
    const __m256i q = _mm256_sub_epi8(nibbles(b[i].qs), _mm256_set1_epi8(8));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + i * 32));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i8(q, y)), _mm256_set1_ps(h2f(b[i].d) * a.d[static_cast<size_t>(i)]), acc);
  }
  return hsum(acc);
}

float dot_q5_0(const uint8_t* w, const QActs& a, int64_t nb) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(w);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    // x - 16: where the fifth bit is clear, OR 0xF0 makes the byte x - 16 (negative).
    const __m256i hi = _mm256_andnot_si256(bits_to_bytes(b[i].qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    const __m256i q = _mm256_or_si256(nibbles(b[i].qs), hi);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + i * 32));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i8(q, y)), _mm256_set1_ps(h2f(b[i].d) * a.d[static_cast<size_t>(i)]), acc);
  }
  return hsum(acc);
}

}  // namespace

bool matvec_q32(DType t, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const QActs& a, int64_t in, float* y) {
  float (*dot)(const uint8_t*, const QActs&, int64_t) = t == DType::Q8_0 ? dot_q8_0 : t == DType::Q4_0 ? dot_q4_0 : t == DType::Q5_0 ? dot_q5_0 : nullptr;
  if (!dot) return false;
  for (int64_t r = r0; r < r1; ++r) y[r] = dot(w + static_cast<size_t>(r) * row_bytes, a, in / 32);
  return true;
}
#else
bool matvec_q32(DType, const uint8_t*, size_t, int64_t, int64_t, const QActs&, int64_t, float*) { return false; }
#endif

GF_CPU_END
