// Prefill for the 32-element block types (Q8_0, Q4_0, Q5_0) with 512-bit
// VNNI: one zmm holds the 8 int32 lanes of one weight block for two tokens,
// so each instruction does the work of two AVX2 ones. Bit-identical to the
// AVX2 prefill and decode kernels, lane for lane:
//  - integers: vpdpbusd needs unsigned x signed bytes, so activations go in as
//    y + 128 and the sum starts from -128 * (sum of the 4 weights of the lane),
//    which leaves exactly sum(w * y) (no saturation: |sum| < 2^17);
//  - floats: acc = fma(float(lanes), d_w * d_y, acc) block after block, then
//    the same 8-lane horizontal sum per token.
#include <algorithm>
#include <vector>

#include "backend/cpu/quant_acts.h"
#include "backend/cpu/simd_avx2.h"
#include "core/thread_pool.h"

GF_CPU_BEGIN

#if GF_CPU_AVX512
namespace {

using simd::hsum;

// Token pairs: for block i of pair p, 64 bytes of y + 128 (token 2p, then
// 2p + 1) and the two scales. An odd last token is paired with itself.
struct PairedActs {
  int64_t nb = 0, pairs = 0;
  std::vector<uint8_t> yu;  // [pairs][nb][64]
  std::vector<float> yd;    // [pairs][nb][2]
};

void pair_acts(const std::vector<QActs>& acts, int64_t T, int64_t in, PairedActs& pa) {
  pa.nb = in / 32;
  pa.pairs = (T + 1) / 2;
  pa.yu.resize(static_cast<size_t>(pa.pairs * pa.nb * 64));
  pa.yd.resize(static_cast<size_t>(pa.pairs * pa.nb * 2));
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  parallel_for(pa.pairs, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int h = 0; h < 2; ++h) {
        const QActs& a = acts[static_cast<size_t>(std::min(2 * p + h, T - 1))];
        for (int64_t i = 0; i < pa.nb; ++i) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 32 * i));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(pa.yu.data() + (p * pa.nb + i) * 64 + 32 * h), _mm256_xor_si256(v, bias));
          pa.yd[static_cast<size_t>((p * pa.nb + i) * 2 + h)] = a.d[static_cast<size_t>(i)];
        }
      }
  });
}

// R unpacked rows x P token pairs over all blocks.
template <int R, int P>
void tile(const int8_t* wq, const float* wd, const int32_t* wc, int64_t in, const PairedActs& pa, int64_t p0, int64_t T,
          int64_t row0, int64_t out, float* y) {
  const int64_t nb = pa.nb;
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
  const uint8_t* yu = pa.yu.data() + p0 * nb * 64;
  const float* yd = pa.yd.data() + p0 * nb * 2;
  for (int64_t i = 0; i < nb; ++i) {
    __m512i w[R], c[R];
    __m512 s[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      w[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + r * in + 32 * i)));
      c[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + r * (in / 4) + 8 * i)));
      s[r] = _mm512_set1_ps(wd[r * nb + i]);
    }
#pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
      const __m512i yv = _mm512_loadu_si512(yu + (p * nb + i) * 64);
      const __m512 dy = simd::pair_broadcast(yd + (p * nb + i) * 2);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512i lanes = _mm512_dpbusd_epi32(c[r], yv, w[r]);
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(s[r], dy), acc[r][p]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) {
      const int64_t t = 2 * (p0 + p);
      y[t * out + row0 + r] = hsum(_mm512_castps512_ps256(acc[r][p]));
      if (t + 1 < T) y[(t + 1) * out + row0 + r] = hsum(simd::upper8(acc[r][p]));
    }
}

template <int R>
void rows_times_pairs(const int8_t* wq, const float* wd, const int32_t* wc, int64_t in, const PairedActs& pa, int64_t T,
                      int64_t row0, int64_t out, float* y) {
  int64_t p = 0;
  for (; p + 2 <= pa.pairs; p += 2) tile<R, 2>(wq, wd, wc, in, pa, p, T, row0, out, y);
  if (p < pa.pairs) tile<R, 1>(wq, wd, wc, in, pa, p, T, row0, out, y);
}

}  // namespace

bool prefill_q32_avx512(const TensorView& W, const std::vector<QActs>& acts, int64_t T, float* y) {
  if (W.dtype != DType::Q8_0 && W.dtype != DType::Q4_0 && W.dtype != DType::Q5_0) return false;
  const int64_t out = W.rows(), in = W.cols(), nb = in / 32;
  thread_local PairedActs paired;  // reused between calls of this thread
  PairedActs& pa = paired;           // the workers below must see this thread's copy
  pair_acts(acts, T, in, pa);
  const size_t row_bytes = W.row_bytes();
  constexpr int64_t R = 4;
  parallel_for(out, [&](int64_t b, int64_t e) {
    thread_local std::vector<int8_t> wq;
    thread_local std::vector<float> wd;
    thread_local std::vector<int32_t> wc;
    wq.resize(static_cast<size_t>(R * in));
    wd.resize(static_cast<size_t>(R * nb));
    wc.resize(static_cast<size_t>(R * in / 4));
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t r0 = b; r0 < e; r0 += R) {
      const int64_t rn = std::min(R, e - r0);
      for (int64_t r = 0; r < rn; ++r) {
        int8_t* q = wq.data() + r * in;
        unpack_row_i8(W.dtype, W.data + static_cast<size_t>(r0 + r) * row_bytes, in, q, wd.data() + r * nb);
        for (int64_t i = 0; i < nb; ++i) {  // -128 * (sum of each lane's 4 weights)
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * i));
          const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, v);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(wc.data() + r * (in / 4) + 8 * i), _mm256_sub_epi32(_mm256_setzero_si256(), s));
        }
      }
      switch (rn) {
        case 4: rows_times_pairs<4>(wq.data(), wd.data(), wc.data(), in, pa, T, r0, out, y); break;
        case 3: rows_times_pairs<3>(wq.data(), wd.data(), wc.data(), in, pa, T, r0, out, y); break;
        case 2: rows_times_pairs<2>(wq.data(), wd.data(), wc.data(), in, pa, T, r0, out, y); break;
        default: rows_times_pairs<1>(wq.data(), wd.data(), wc.data(), in, pa, T, r0, out, y); break;
      }
    }
  }, 16);
  return true;
}

#else
bool prefill_q32_avx512(const TensorView&, const std::vector<QActs>&, int64_t, float*) { return false; }
#endif

GF_CPU_END
