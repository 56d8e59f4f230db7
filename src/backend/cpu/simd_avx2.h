// Small AVX2 building blocks shared by the CPU kernels (inline, header-only so
// every kernel TU gets them without a call). Kernel variants only (isa.h):
// each variant has its own copy, in its own namespace.
#pragma once
#include <cstdint>
#include <cstring>

#include "backend/cpu/isa.h"

#ifndef GF_CPU_ISA
#error "simd_avx2.h is for the kernel variants (isa.h)"
#endif
#if GF_CPU_AVX2

GF_CPU_BEGIN
namespace simd {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// unsigned x signed bytes, summed in fours: one VNNI instruction in the
// AVX-512 variant (AVX512-VNNI+VL), maddubs + madd otherwise. Same result:
// |x| <= 128 and |y| <= 127 never saturate maddubs.
inline __m256i sum_us8(__m256i ax, __m256i sy) {
#if GF_CPU_AVX512
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
#endif
}
// Signed int8 x signed int8, 32 lanes -> 8 int32 sums of 4 products.
inline __m256i dot_i8(__m256i x, __m256i y) { return sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)); }
// 32 bits -> 32 bytes of 0xFF (bit set) or 0x00.
inline __m256i bits_to_bytes(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
  __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x)), shuf);
  b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}
// 16 bytes of nibbles -> 32 bytes: low nibbles first, then high.
inline __m256i nibbles(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0xF);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

#if GF_CPU_AVX512
// The upper 8 floats of a zmm (its lower 8: _mm512_castps512_ps256).
inline __m256 upper8(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
// Sum of 16 lanes as the AVX2 kernels sum two 8-lane accumulators: halves
// added lane by lane, then hsum (the same bits).
inline float hsum16(__m512 v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), upper8(v))); }
// [s[0] x 8 | s[1] x 8]: the scales of two tokens held in the two halves of a zmm.
inline __m512 pair_broadcast(const float* s) {
  double two;
  std::memcpy(&two, s, sizeof two);
  const __m512i lo_hi = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(lo_hi, _mm512_castpd_ps(_mm512_set1_pd(two)));
}
#endif

}  // namespace simd
GF_CPU_END

#endif  // GF_CPU_AVX2
