#include "backend/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "backend/cpu/simd_avx2.h"

GF_CPU_BEGIN
namespace {

// exp(x) as Cephes' expf: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial, times 2^n built in the exponent bits. Written once over a
// "lane" type so the scalar and the 8-wide versions do the same IEEE operations.
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP[6] = {1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f, 5.0000001201E-1f};
constexpr float kExpMax = 88.0f, kExpMin = -87.0f;  // beyond: +inf; below: clamped (~1e-38)
constexpr float kGeluK = 0.7978845608028654f, kGeluC = 0.044715f;

float exp_scalar(float x) {
  if (x > kExpMax) return INFINITY;
  x = std::fmax(x, kExpMin);
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kP[0];
  for (int i = 1; i < 6; ++i) p = std::fma(p, r, kP[i]);
  p = std::fma(p, r * r, r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

float gelu_scalar(float g) {
  const float u = kGeluK * std::fma(kGeluC * g, g * g, g);
  return g / (1.0f + exp_scalar(-2.0f * u));
}

#if GF_CPU_AVX2
__m256 exp8(__m256 x) {
  const __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(kExpMax), _CMP_GT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpMin)), _mm256_set1_ps(kExpMax));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[i]));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), _mm256_set1_ps(INFINITY), over);
}

__m256 gelu8(__m256 g) {
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kGeluK), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kGeluC), g), _mm256_mul_ps(g, g), g));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#endif

}  // namespace

void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
#if GF_CPU_AVX2
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(gelu8(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
#endif
  for (; i < n; ++i) gate[i] = gelu_scalar(gate[i]) * up[i];
}

void rms_norm_row(const float* x, float* y, const float* w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w ? (x[i] * inv) * w[i] : x[i] * inv;
}

void rope_token(float* x, int64_t heads, int head_dim, const float* cs, const float* sn) {
  const int half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = v[i], c = v[i + half];
      v[i] = a * cs[i] - c * sn[i];
      v[i + half] = c * cs[i] + a * sn[i];
    }
  }
}

GF_CPU_END
