#include "backend/cpu/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/ggml_blocks.h"
#include "backend/cpu/simd_avx2.h"
#include "core/thread_pool.h"

GF_CPU_BEGIN
namespace {

void quantize_q8k_row(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const float* xb = x + b * 256;
    int8_t* qb = q + b * 256;
#if GF_CPU_AVX2
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 256; i += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < 256; i += 32) {
      // Round to nearest even, as nearbyint in the scalar path.
      __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vid));
      __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), vid));
      __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), vid));
      __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), vid));
      // packs interleave 128-bit lanes; the permute restores element order.
      __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + i), p);
    }
    d[b] = amax / 127.0f;
#else
    float amax = 0;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 256; ++i) qb[i] = static_cast<int8_t>(std::nearbyint(xb[i] * id));
    d[b] = amax / 127.0f;
#endif
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += qb[16 * g + i];
      bsums[b * 16 + g] = static_cast<int16_t>(s);
    }
  }
}

// Per-group scales/mins in element order, then expanded for the kernel.
void finish(KBlock* o, const int16_t* gs, const int16_t* gm, float d, float dmin) {
  for (int k = 0; k < 8; ++k)
    for (int l = 0; l < 16; ++l) o->sc[k][l] = gs[2 * k + (l >= 8)];
  std::memcpy(o->mn, gm, sizeof o->mn);
  o->d = d;
  o->dmin = dmin;
}

void unpack_q4_k(const BlockQ4_K* b, KBlock* o) {
  int16_t gs[16], gm[16];
  for (int j = 0; j < 4; ++j) {
    for (int h = 0; h < 2; ++h) {
      uint8_t sc, m;
      k_scale_min(2 * j + h, b->scales, &sc, &m);
      gs[4 * j + 2 * h] = gs[4 * j + 2 * h + 1] = sc;
      gm[4 * j + 2 * h] = gm[4 * j + 2 * h + 1] = m;
    }
    for (int l = 0; l < 32; ++l) {
      o->q[64 * j + l] = b->qs[32 * j + l] & 0xF;
      o->q[64 * j + 32 + l] = b->qs[32 * j + l] >> 4;
    }
  }
  finish(o, gs, gm, f16_to_f32(b->d), f16_to_f32(b->dmin));
}

void unpack_q5_k(const BlockQ5_K* b, KBlock* o) {
  int16_t gs[16], gm[16];
  for (int j = 0; j < 4; ++j) {
    for (int h = 0; h < 2; ++h) {
      uint8_t sc, m;
      k_scale_min(2 * j + h, b->scales, &sc, &m);
      gs[4 * j + 2 * h] = gs[4 * j + 2 * h + 1] = sc;
      gm[4 * j + 2 * h] = gm[4 * j + 2 * h + 1] = m;
    }
    const uint8_t u1 = static_cast<uint8_t>(1 << (2 * j)), u2 = static_cast<uint8_t>(2 << (2 * j));
    for (int l = 0; l < 32; ++l) {
      o->q[64 * j + l] = static_cast<uint8_t>((b->qs[32 * j + l] & 0xF) + (b->qh[l] & u1 ? 16 : 0));
      o->q[64 * j + 32 + l] = static_cast<uint8_t>((b->qs[32 * j + l] >> 4) + (b->qh[l] & u2 ? 16 : 0));
    }
  }
  finish(o, gs, gm, f16_to_f32(b->d), f16_to_f32(b->dmin));
}

// q - 32 with q in [0, 64): the -32 becomes a min of 32 * scale (dmin = d).
void unpack_q6_k(const BlockQ6_K* b, KBlock* o) {
  int16_t gs[16], gm[16];
  for (int g = 0; g < 16; ++g) {
    gs[g] = b->scales[g];
    gm[g] = static_cast<int16_t>(32 * b->scales[g]);
  }
  for (int n = 0; n < 2; ++n) {
    const uint8_t* ql = b->ql + 64 * n;
    const uint8_t* qh = b->qh + 32 * n;
    uint8_t* q = o->q + 128 * n;
    for (int l = 0; l < 32; ++l) {
      q[l] = static_cast<uint8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
      q[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      q[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      q[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
  const float d = f16_to_f32(b->d);
  finish(o, gs, gm, d, d);
}

// (q & 3) - (hbit ? 0 : 4) = u - 4 with u = (q & 3) + 4 * hbit.
void unpack_q3_k(const BlockQ3_K* b, KBlock* o) {
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, b->scales, 12);
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  const int8_t* scales = reinterpret_cast<const int8_t*>(aux);
  int16_t gs[16], gm[16];
  for (int g = 0; g < 16; ++g) {
    gs[g] = static_cast<int16_t>(scales[g] - 32);
    gm[g] = static_cast<int16_t>(4 * gs[g]);
  }
  const uint8_t* q = b->qs;
  uint8_t m = 1;
  uint8_t* y = o->q;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int l = 0; l < 32; ++l) *y++ = static_cast<uint8_t>(((q[l] >> shift) & 3) + ((b->hmask[l] & m) ? 4 : 0));
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
  const float d = f16_to_f32(b->d);
  finish(o, gs, gm, d, d);
}

void unpack_q2_k(const BlockQ2_K* b, KBlock* o) {
  int16_t gs[16], gm[16];
  for (int g = 0; g < 16; ++g) {
    gs[g] = b->scales[g] & 0xF;
    gm[g] = b->scales[g] >> 4;
  }
  const uint8_t* q = b->qs;
  uint8_t* y = o->q;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2)
      for (int l = 0; l < 32; ++l) *y++ = static_cast<uint8_t>((q[l] >> shift) & 3);
    q += 32;
  }
  finish(o, gs, gm, f16_to_f32(b->d), f16_to_f32(b->dmin));
}

#if GF_CPU_AVX2
using simd::hsum;

template <int N>
void kdot(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t0, float* out) {
  __m256 acc[N];
  const int8_t* yq[N];
  const float* yd[N];
  const int16_t* yb[N];
  #pragma GCC unroll 4
  for (int k = 0; k < N; ++k) {
    acc[k] = _mm256_setzero_ps();
    yq[k] = a.tq(t0 + k);
    yd[k] = a.td(t0 + k);
    yb[k] = a.tb(t0 + k);
  }
  for (int64_t s = 0; s < nsb; ++s) {
    const KBlock& b = w[s];
    __m256i ai[N];
    #pragma GCC unroll 4
    for (int k = 0; k < N; ++k) ai[k] = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(b.q + 32 * j));
      const __m256i sc = _mm256_load_si256(reinterpret_cast<const __m256i*>(b.sc[j]));
      #pragma GCC unroll 4
      for (int k = 0; k < N; ++k) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yq[k] + 256 * s + 32 * j));
        ai[k] = _mm256_add_epi32(ai[k], _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), sc));
      }
    }
    const __m256i mn = _mm256_load_si256(reinterpret_cast<const __m256i*>(b.mn));
    #pragma GCC unroll 4
    for (int k = 0; k < N; ++k) {
      const __m256i m = _mm256_madd_epi16(mn, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb[k] + 16 * s)));
      const float dy = yd[k][s];
      // Same float operations as the fused decode kernels (batch invariance).
      acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai[k]), _mm256_set1_ps(b.d * dy), acc[k]);
      acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(-(b.dmin * dy)), acc[k]);
    }
  }
  #pragma GCC unroll 4
  for (int k = 0; k < N; ++k) out[k] = hsum(acc[k]);
}
#else
template <int N>
void kdot(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t0, float* out) {
  #pragma GCC unroll 4
  for (int k = 0; k < N; ++k) {
    const int8_t* yq = a.tq(t0 + k);
    const float* yd = a.td(t0 + k);
    const int16_t* yb = a.tb(t0 + k);
    float acc = 0;
    for (int64_t s = 0; s < nsb; ++s) {
      const KBlock& b = w[s];
      int32_t isum = 0, msum = 0;
      for (int e = 0; e < 256; ++e) isum += b.sc[e / 32][(e % 32) / 16 * 8] * b.q[e] * yq[256 * s + e];
      for (int g = 0; g < 16; ++g) msum += b.mn[g] * yb[16 * s + g];
      acc += yd[s] * (b.d * static_cast<float>(isum) - b.dmin * static_cast<float>(msum));
    }
    out[k] = acc;
  }
}
#endif

#if GF_CPU_AVX2
// 16 bytes: bytes 0-7 = index lo, bytes 8-15 = index hi; with shuffle_epi8 and
// cvtepi8_epi16 it spreads two byte scales over the 16 int16 madd lanes.
inline __m128i scale_pair_mask(int lo, int hi) {
  return _mm_set_epi64x(0x0101010101010101ll * hi, 0x0101010101010101ll * lo);
}

// Q4_K and Q5_K share scales and layout; Q5_K adds a fifth bit from qh.
template <class B>
float dot_q45_k_fused(const B* x, int64_t nsb, const int8_t* yq, const float* yd, const int16_t* yb) {
  const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  const __m256i m4 = _mm256_set1_epi8(0xF);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nsb; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096, _MM_HINT_T0);  // see dot_bf16 (matmul.cpp)
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096 + 64, _MM_HINT_T0);
    const float d = _cvtsh_ss(x[i].d) * yd[i], dmin = _cvtsh_ss(x[i].dmin) * yd[i];
    // The 12 scale bytes -> 8 scales (bytes 0-7) and 8 mins (bytes 8-15).
    uint32_t u[4];
    std::memcpy(u, x[i].scales, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
    const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
    // Mins per group of 16 (each sub-block's min twice) against the 16-sums:
    // the same lanes as kdot's, so decode and prefill agree bit for bit.
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb + 16 * i));
    const __m128i mins = _mm_shuffle_epi8(sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
    const __m256i mvec = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mins), bs);
    __m256i sumi = _mm256_setzero_si256();
    const int8_t* y = yq + 256 * i;
    for (int j = 0; j < 4; ++j) {
      const __m256i sl = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sm, scale_pair_mask(2 * j, 2 * j)));
      const __m256i sh = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sm, scale_pair_mask(2 * j + 1, 2 * j + 1)));
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * j));
      __m256i ql = _mm256_and_si256(q, m4), qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if constexpr (sizeof(B) == sizeof(BlockQ5_K)) {
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + i)->qh));
        const __m256i one = _mm256_set1_epi8(1);
        ql = _mm256_or_si256(ql, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), one), 4));
        qh = _mm256_or_si256(qh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), one), 4));
      }
      const __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 64 * j)));
      const __m256i ph = _mm256_maddubs_epi16(qh, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 64 * j + 32)));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(sl, pl), _mm256_madd_epi16(sh, ph)));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mvec), _mm256_set1_ps(-dmin), acc);
  }
  return hsum(acc);
}

float dot_q6_k_fused(const BlockQ6_K* x, int64_t nsb, const int8_t* yq, const float* yd, const int16_t* yb) {
  const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nsb; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096, _MM_HINT_T0);  // see dot_bf16 (matmul.cpp)
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096 + 64, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096 + 128, _MM_HINT_T0);
    const float d = _cvtsh_ss(x[i].d) * yd[i];
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    // q - 32: a min of 32 * scale per group of 16 (as kdot, bit for bit).
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb + 16 * i));
    const __m256i mvec = _mm256_madd_epi16(_mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5), bs);
    __m256i sumi = _mm256_setzero_si256();
    const int8_t* y = yq + 256 * i;
    for (int n = 0; n < 2; ++n) {
      const uint8_t* ql = x[i].ql + 64 * n;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * n));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), _mm256_set1_epi8(0x30))),
      };
      #pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const int g = 8 * n + 2 * k;
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, scale_pair_mask(g, g + 1)));
        const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 128 * n + 32 * k)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mvec), _mm256_set1_ps(-d), acc);
  }
  return hsum(acc);
}
#endif

}  // namespace

bool kquant_dot_fused(DType t, const uint8_t* row, int64_t nsb, const Q8KActs& a, int64_t tok, float* out) {
#if GF_CPU_AVX2
  if (t == DType::Q4_K) {
    *out = dot_q45_k_fused(reinterpret_cast<const BlockQ4_K*>(row), nsb, a.tq(tok), a.td(tok), a.tb(tok));
    return true;
  }
  if (t == DType::Q5_K) {
    *out = dot_q45_k_fused(reinterpret_cast<const BlockQ5_K*>(row), nsb, a.tq(tok), a.td(tok), a.tb(tok));
    return true;
  }
  if (t == DType::Q6_K) {
    *out = dot_q6_k_fused(reinterpret_cast<const BlockQ6_K*>(row), nsb, a.tq(tok), a.td(tok), a.tb(tok));
    return true;
  }
#endif
  (void)t, (void)row, (void)nsb, (void)a, (void)tok, (void)out;
  return false;
}

void quantize_q8k(const float* x, int64_t T, int64_t n, Q8KActs& a) {
  a.n = n;
  a.q.resize(static_cast<size_t>(T * n));
  a.d.resize(static_cast<size_t>(T * (n / 256)));
  a.bsums.resize(static_cast<size_t>(T * (n / 16)));
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      quantize_q8k_row(x + t * n, n, a.q.data() + t * n, a.d.data() + t * (n / 256), a.bsums.data() + t * (n / 16));
  });
}

bool kquant_supported(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

void kquant_unpack_row(DType t, const uint8_t* row, int64_t nsb, KBlock* out) {
  for (int64_t s = 0; s < nsb; ++s) {
    switch (t) {
      case DType::Q2_K: unpack_q2_k(reinterpret_cast<const BlockQ2_K*>(row) + s, out + s); break;
      case DType::Q3_K: unpack_q3_k(reinterpret_cast<const BlockQ3_K*>(row) + s, out + s); break;
      case DType::Q4_K: unpack_q4_k(reinterpret_cast<const BlockQ4_K*>(row) + s, out + s); break;
      case DType::Q5_K: unpack_q5_k(reinterpret_cast<const BlockQ5_K*>(row) + s, out + s); break;
      case DType::Q6_K: unpack_q6_k(reinterpret_cast<const BlockQ6_K*>(row) + s, out + s); break;
      default: break;
    }
  }
}

#if GF_CPU_AVX512
bool kquant_pairs_available() { return true; }

void pair_q8k(const Q8KActs& a, int64_t T, Q8KPairs& p) {
  const int64_t n = a.n, nsb = n / 256;
  p.n = n;
  p.pairs = (T + 1) / 2;
  p.q.resize(static_cast<size_t>(p.pairs * n * 2));
  p.bsums.resize(static_cast<size_t>(p.pairs * nsb * 32));
  p.d.resize(static_cast<size_t>(p.pairs * nsb * 2));
  parallel_for(p.pairs, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      for (int h = 0; h < 2; ++h) {
        const int64_t t = std::min(2 * i + h, T - 1);
        for (int64_t c = 0; c < n / 32; ++c) std::memcpy(p.q.data() + (i * (n / 32) + c) * 64 + 32 * h, a.tq(t) + 32 * c, 32);
        for (int64_t s = 0; s < nsb; ++s) {
          std::memcpy(p.bsums.data() + (i * nsb + s) * 32 + 16 * h, a.tb(t) + 16 * s, 32);
          p.d[static_cast<size_t>((i * nsb + s) * 2 + h)] = a.td(t)[s];
        }
      }
  });
}

namespace {
template <int P>
void kdot_pairs(const KBlock* w, int64_t nsb, const Q8KPairs& pa, int64_t p0, int64_t T, float* y, int64_t stride) {
  __m512 acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_ps();
  const int64_t chunks = pa.n / 32;
  for (int64_t s = 0; s < nsb; ++s) {
    const KBlock& b = w[s];
    __m512i ai[P];
    for (int p = 0; p < P; ++p) ai[p] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512i q = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(b.q + 32 * j)));
      const __m512i sc = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(b.sc[j])));
#pragma GCC unroll 2
      for (int p = 0; p < P; ++p) {
        const __m512i yv = _mm512_loadu_si512(pa.q.data() + ((p0 + p) * chunks + s * 8 + j) * 64);
        ai[p] = _mm512_add_epi32(ai[p], _mm512_madd_epi16(_mm512_maddubs_epi16(q, yv), sc));
      }
    }
    const __m512i mn = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(b.mn)));
#pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
      const int64_t k = (p0 + p) * nsb + s;
      const __m512i m = _mm512_madd_epi16(mn, _mm512_loadu_si512(pa.bsums.data() + k * 32));
      const __m512 dy = simd::pair_broadcast(pa.d.data() + k * 2);
      // Per lane exactly kdot's fma(ai, d * dy) then fma(m, -(dmin * dy)).
      acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[p]), _mm512_mul_ps(_mm512_set1_ps(b.d), dy), acc[p]);
      acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(_mm512_set1_ps(-b.dmin), dy), acc[p]);
    }
  }
  for (int p = 0; p < P; ++p) {
    const int64_t t = 2 * (p0 + p);
    y[t * stride] = hsum(_mm512_castps512_ps256(acc[p]));
    if (t + 1 < T) y[(t + 1) * stride] = hsum(simd::upper8(acc[p]));
  }
}
}  // namespace

void kquant_dot_pairs(const KBlock* w, int64_t nsb, const Q8KPairs& p, int64_t p0, int np, int64_t T, float* y, int64_t stride) {
  if (np == 2) kdot_pairs<2>(w, nsb, p, p0, T, y, stride);
  else kdot_pairs<1>(w, nsb, p, p0, T, y, stride);
}
#else
bool kquant_pairs_available() { return false; }
void pair_q8k(const Q8KActs&, int64_t, Q8KPairs&) {}
void kquant_dot_pairs(const KBlock*, int64_t, const Q8KPairs&, int64_t, int, int64_t, float*, int64_t) {}
#endif

void kquant_dot1(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t, float* out) { kdot<1>(w, nsb, a, t, out); }
void kquant_dot4(const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t0, float* out) { kdot<4>(w, nsb, a, t0, out); }

GF_CPU_END
