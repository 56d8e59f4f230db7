// y[T, out] = x[T, in] · W[out, in]^T on the CPU.
//  - float weights (F32/F16/BF16): float32 FMA dot products;
//  - Q8_0, Q4_0, Q5_0, Q4_K, Q6_K: activations are quantized once per call to
//    int8 blocks of 32 (as llama.cpp's Q8_0/Q8_K), then integer dot products
//    with AVX2 (maddubs/madd) and one float scale per block;
//  - every other supported type: dequantize the row, float dot (generic path).
// Rows are split across the thread pool; each weight row is reused for all T
// tokens while it is in L1.
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdlib>
#include <string>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/kquants.h"
#include "backend/cpu/quant_acts.h"
#include "formats/ggml_blocks.h"
#include "backend/cpu/simd_avx2.h"
#include "core/thread_pool.h"

GF_CPU_BEGIN
namespace {

// Prefill tiling: a tile of kRowTile unpacked weight rows stays in L1/L2 while
// kTokTile tokens' activations stay in L2; each weight block is then dotted
// with 4 tokens per load.
constexpr int64_t kRowTile = 8;
constexpr int64_t kTokTile = 32;
constexpr int64_t kFusedMaxTokens = 12;

#if GF_CPU_AVX2
using namespace simd;
}  // namespace

// Prefill: a Q4_0/Q5_0 row is unpacked once to signed int8 + one scale per
// 32, then dotted with several tokens at a time (the weight loads are shared).
bool unpack_row_i8(DType t, const uint8_t* w, int64_t n, int8_t* q, float* d) {
  for (int64_t i = 0; i < n / 32; ++i) {
    __m256i v;
    if (t == DType::Q5_0) {
      const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(w) + i;
      v = _mm256_or_si256(nibbles(b->qs), _mm256_andnot_si256(bits_to_bytes(b->qh), _mm256_set1_epi8(static_cast<char>(0xF0))));
      d[i] = h2f(b->d);
    } else if (t == DType::Q4_0) {
      const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w) + i;
      v = _mm256_sub_epi8(nibbles(b->qs), _mm256_set1_epi8(8));
      d[i] = h2f(b->d);
    } else if (t == DType::Q8_0) {
      const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(w) + i;
      v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
      d[i] = h2f(b->d);
    } else {
      return false;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * i), v);
  }
  return true;
}

namespace {

// out[k] = row · act[k] for 4 tokens.
void dot_unpacked_x4(const int8_t* q, const float* d, int64_t n, const QActs* const* acts, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * i));
    const __m256i aw = _mm256_sign_epi8(w, w);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acts[k]->q.data() + 32 * i));
      const __m256i p = sum_us8(aw, _mm256_sign_epi8(y, w));
      acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d[i] * acts[k]->d[static_cast<size_t>(i)]), acc[k]);
    }
  }
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) out[k] = hsum(acc[k]);
}

float dot_unpacked(const int8_t* q, const float* d, int64_t n, const QActs& a) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * i));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 32 * i));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i8(w, y)), _mm256_set1_ps(d[i] * a.d[static_cast<size_t>(i)]), acc);
  }
  return hsum(acc);
}

}  // namespace

float dot_f32(const float* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += w[i] * x[i];
  return s;
}

namespace {

// out[k] = w · x[k * ldx] for 4 tokens; two accumulators per token hide the
// FMA latency.
void dot4_f32(const float* w, const float* x, int64_t ldx, int64_t n, float* out) {
  __m256 a[4][2];
  for (auto& ak : a) ak[0] = ak[1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      a[k][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + k * ldx + i), a[k][0]);
      a[k][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + k * ldx + i + 8), a[k][1]);
    }
  }
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    float s = hsum(_mm256_add_ps(a[k][0], a[k][1]));
    for (int64_t j = i; j < n; ++j) s += w[j] * x[k * ldx + j];
    out[k] = s;
  }
}

inline __m256 load_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // Decode streams rows from DRAM, and the hardware prefetcher alone leaves
    // bandwidth unused: prefetch 4 KB ahead.
    _mm_prefetch(reinterpret_cast<const char*>(w + i) + 4096, _MM_HINT_T0);
    acc0 = _mm256_fmadd_ps(load_bf16(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load_bf16(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}
// Same accumulation order as dot_f32 (prefill dots dequantized f16 rows with it).
float dot_f16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(w + i) + 4096, _MM_HINT_T0);  // as dot_bf16
    acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8))), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
  return s;
}

// Prefill on float weights: 2 weight rows x 3 tokens per pass (12
// accumulators, 4 weight + 6 activation loads per 12 FMAs instead of 10 per
// 8). Decode stays one row at a time (two rows per pass were slower).
// Each (row, token) keeps dot_f32's two accumulators over alternate 8-float
// chunks, so the result is bit for bit that of dot_f32 / dot_bf16: a
// token's logits do not depend on how many tokens share the step.
struct LoadF32 {
  static __m256 at(const void* w, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(w) + i); }
  static float one(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
};
struct LoadBF16 {
  static __m256 at(const void* w, int64_t i) { return load_bf16(static_cast<const uint16_t*>(w) + i); }
  static float one(const void* w, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};
struct LoadF16 {
  static __m256 at(const void* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static float one(const void* w, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};
template <class L, int C>
void tile_2xC(const void* w0, const void* w1, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  __m256 a[2][C][2];
  for (auto& ar : a)
    for (auto& at : ar) at[0] = at[1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    #pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256 u0 = L::at(w0, i + 8 * h), u1 = L::at(w1, i + 8 * h);
      #pragma GCC unroll 3
      for (int k = 0; k < C; ++k) {
        __m256 xv = _mm256_loadu_ps(x + k * ldx + i + 8 * h);
        // Keep xv in a register: folded into both FMAs it would be loaded twice (the loop is load-bound).
        asm("" : "+x"(xv));
        a[0][k][h] = _mm256_fmadd_ps(u0, xv, a[0][k][h]);
        a[1][k][h] = _mm256_fmadd_ps(u1, xv, a[1][k][h]);
      }
    }
  }
  const void* w[2] = {w0, w1};
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < C; ++k) {
      float s = hsum(_mm256_add_ps(a[r][k][0], a[r][k][1]));
      for (int64_t j = i; j < n; ++j) s += L::one(w[r], j) * x[k * ldx + j];
      y[k * ldy + r] = s;
    }
}
#if GF_CPU_AVX512
// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized on their own
// undefined-vector placeholders; the warnings are about the headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// With AVX-512: 4 rows x 4 tokens, one 16-lane accumulator per (row, token).
// Lanes 0-7 and 8-15 are exactly dot_f32's two 8-lane accumulators (the same
// elements, the same FMAs), reduced the same way: still bit-identical to decode.
struct LoadF32x16 {
  static __m512 at(const void* w, int64_t i) { return _mm512_loadu_ps(static_cast<const float*>(w) + i); }
};
struct LoadBF16x16 {
  static __m512 at(const void* w, int64_t i) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};
struct LoadF16x16 {
  static __m512 at(const void* w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  }
};
template <class L16, class L>
void tile_4x4(const void* const* w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  __m512 a[4][4];
  for (auto& ar : a)
    for (auto& v : ar) v = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 u[4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) u[r] = L16::at(w[r], i);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512 xv = _mm512_loadu_ps(x + k * ldx + i);
      #pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) a[r][k] = _mm512_fmadd_ps(u[r], xv, a[r][k]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k) {
      float s = hsum16(a[r][k]);
      for (int64_t j = i; j < n; ++j) s += L::one(w[r], j) * x[k * ldx + j];
      y[k * ldy + r] = s;
    }
}
#pragma GCC diagnostic pop
constexpr int64_t kTileRows = 4, kTileToks = 4;
#else
constexpr int64_t kTileRows = 2, kTileToks = 3;
#endif

// One row of F32/F16/BF16 weights dotted with x (tails of the tiled kernels).
float dot_float_row(const TensorView& W, int64_t r, const float* x) {
  const void* w = W.row(r);
  if (W.dtype == DType::BF16) return dot_bf16(static_cast<const uint16_t*>(w), x, W.cols());
  if (W.dtype == DType::F16) return dot_f16(static_cast<const uint16_t*>(w), x, W.cols());
  return dot_f32(static_cast<const float*>(w), x, W.cols());
}
#endif

// The types with int8 kernels over 32-element blocks (quant_acts.h).
bool is_q32(DType t) {
#if GF_CPU_AVX2
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q5_0;
#else
  (void)t;
  return false;
#endif
}

}  // namespace

#if !GF_CPU_AVX2
float dot_f32(const float* w, const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += w[i] * x[i];
  return s;
}
namespace {
void dot4_f32(const float* w, const float* x, int64_t ldx, int64_t n, float* out) {
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) out[k] = dot_f32(w, x + k * ldx, n);
}
}  // namespace
#endif

namespace {

// K-quants: Q8_K activations, rows unpacked to KBlocks.
void matmul_kquant(const TensorView& W, const float* x, int64_t T, float* y) {
  const int64_t out = W.rows(), in = W.cols(), nsb = in / 256;
  thread_local Q8KActs acts;
  quantize_q8k(x, T, in, acts);
  const Q8KActs& a = acts;
  const size_t row_bytes = W.row_bytes();
  // A token's result must not depend on how many tokens share the step (or
  // batched serving would drift from single-sequence decoding): the fused
  // decode kernels perform exactly the unpacked kernel's integer and float
  // operations (tests: KQuantFusedDecodeEqualsUnpackedBitForBit), and for
  // T = 1 are much faster than unpacking each row.
  // Up to kFusedMaxTokens tokens (decode, batched decode) the fused kernel per
  // token beats unpacking each row once (~13 fused dots' worth of work).
  if (T <= kFusedMaxTokens) {
    float probe;
    if (kquant_dot_fused(W.dtype, W.data, 0, a, 0, &probe)) {
      parallel_for(out, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r)
          for (int64_t t = 0; t < T; ++t) kquant_dot_fused(W.dtype, W.data + static_cast<size_t>(r) * row_bytes, nsb, a, t, y + t * out + r);
      }, 16);
      return;
    }
  }
  thread_local Q8KPairs paired;  // 512-bit prefill: token pairs interleaved
  Q8KPairs& pa = paired;          // (the workers below must see this thread's copy)
  const bool pairs = T >= 4 && kquant_pairs_available();
  if (pairs) pair_q8k(a, T, pa);
  parallel_for(out, [&](int64_t b, int64_t e) {
    thread_local std::vector<KBlock> buf;
    const int64_t rt = T == 1 ? 1 : kRowTile;
    buf.resize(static_cast<size_t>(rt * nsb));
    for (int64_t r0 = b; r0 < e; r0 += rt) {
      const int64_t rn = std::min(rt, e - r0);
      for (int64_t i = 0; i < rn; ++i)
        kquant_unpack_row(W.dtype, W.data + static_cast<size_t>(r0 + i) * row_bytes, nsb, buf.data() + i * nsb);
      for (int64_t t0 = 0; t0 < T; t0 += kTokTile) {
        const int64_t t1 = std::min(T, t0 + kTokTile);
        for (int64_t i = 0; i < rn; ++i) {
          const KBlock* wr = buf.data() + i * nsb;
          float* yr = y + r0 + i;
          int64_t t = t0;
          if (pairs) {  // t0 is even (kTokTile is)
            for (; t < t1; t += 4) kquant_dot_pairs(wr, nsb, pa, t / 2, t + 2 < t1 ? 2 : 1, t1, yr, out);
            continue;
          }
          for (; t + 4 <= t1; t += 4) {
            float res[4];
            kquant_dot4(wr, nsb, a, t, res);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) yr[(t + k) * out] = res[k];
          }
          for (; t < t1; ++t) kquant_dot1(wr, nsb, a, t, yr + t * out);
        }
      }
    }
  }, 16);
}

}  // namespace

void for_row_blocks(const TensorView& W, int64_t T, int64_t toks, const std::function<void(int64_t, int64_t, int64_t, int64_t)>& fn) {
  // ~256 KB of weight rows stay in L2 while all tokens pass over them (with
  // 16-row blocks every block re-read all activations from L3).
  const int64_t rows = std::clamp<int64_t>(static_cast<int64_t>((256 << 10) / W.row_bytes()), 16, 1024) / 4 * 4;
  parallel_for(W.rows(), [&](int64_t b, int64_t e) {
    for (int64_t r0 = b; r0 < e; r0 += rows)
      for (int64_t t0 = 0; t0 < T; t0 += toks) fn(r0, std::min(e, r0 + rows), t0, std::min(T, t0 + toks));
  }, 16);
}

namespace {
// Float weights (or any type dequantized row by row) times float32 activations.
void matmul_float(const TensorView& W, const float* x, int64_t T, float* y) {
  const int64_t out = W.rows(), in = W.cols();
  if (matmul_bf16_split(W, x, T, y)) return;  // the AVX-512 variant
#if GF_CPU_AVX2
  if (T >= 4 && (W.dtype == DType::F32 || W.dtype == DType::BF16 || W.dtype == DType::F16)) {
    // Weights read in place (no float copy: half the bytes for bf16), in the
    // row blocks of for_row_blocks.
    constexpr int64_t kToks = 2 * kTileToks;
    const DType dt = W.dtype;
    auto tile = [&](int64_t r, int64_t t) {
      const float* xt = x + t * in;
      float* yt = y + t * out + r;
#if GF_CPU_AVX512
      const void* w[4] = {W.row(r), W.row(r + 1), W.row(r + 2), W.row(r + 3)};
      if (dt == DType::BF16) tile_4x4<LoadBF16x16, LoadBF16>(w, xt, in, in, yt, out);
      else if (dt == DType::F16) tile_4x4<LoadF16x16, LoadF16>(w, xt, in, in, yt, out);
      else tile_4x4<LoadF32x16, LoadF32>(w, xt, in, in, yt, out);
#else
      if (dt == DType::BF16) tile_2xC<LoadBF16, 3>(W.row(r), W.row(r + 1), xt, in, in, yt, out);
      else if (dt == DType::F16) tile_2xC<LoadF16, 3>(W.row(r), W.row(r + 1), xt, in, in, yt, out);
      else tile_2xC<LoadF32, 3>(W.row(r), W.row(r + 1), xt, in, in, yt, out);
#endif
    };
    auto dot = [&](int64_t r, int64_t t) { return dot_float_row(W, r, x + t * in); };
    for_row_blocks(W, T, kToks, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
      int64_t r = r0;
      for (; r + kTileRows <= r1; r += kTileRows) {
        int64_t t = t0;
        for (; t + kTileToks <= t1; t += kTileToks) tile(r, t);
        for (; t < t1; ++t)
          for (int64_t q = r; q < r + kTileRows; ++q) y[t * out + q] = dot(q, t);
      }
      for (; r < r1; ++r)
        for (int64_t t = t0; t < t1; ++t) y[t * out + r] = dot(r, t);
    });
    return;
  }
#endif
  if (T >= 4) {
    // Prefill on float (or generically dequantized) weights: float32 rows in
    // row x token tiles, each weight vector loaded once for 4 tokens.
    // float32 rows are 4x larger than int8: fewer tokens per tile.
    constexpr int64_t kFRowTile = 16, kFTokTile = 8;
    parallel_for(out, [&](int64_t b, int64_t e) {
      thread_local std::vector<float> buf;
      buf.resize(static_cast<size_t>(kFRowTile * in));
      for (int64_t r0 = b; r0 < e; r0 += kFRowTile) {
        const int64_t rn = std::min(kFRowTile, e - r0);
        for (int64_t i = 0; i < rn; ++i) (void)dequantize_row(W.dtype, W.row(r0 + i), buf.data() + i * in, in);
        for (int64_t t0 = 0; t0 < T; t0 += kFTokTile) {
          const int64_t t1 = std::min(T, t0 + kFTokTile);
          for (int64_t i = 0; i < rn; ++i) {
            const float* wr = buf.data() + i * in;
            float* yr = y + r0 + i;
            int64_t t = t0;
            for (; t + 4 <= t1; t += 4) {
              float res[4];
              dot4_f32(wr, x + t * in, in, in, res);
              #pragma GCC unroll 4
              for (int k = 0; k < 4; ++k) yr[(t + k) * out] = res[k];
            }
            for (; t < t1; ++t) yr[t * out] = dot_f32(wr, x + t * in, in);
          }
        }
      }
    }, 16);
    return;
  }
  parallel_for(out, [&](int64_t b, int64_t e) {
    std::vector<float> buf;
    for (int64_t r = b; r < e; ++r) {
      const float* wr;
#if GF_CPU_AVX2
      if (W.dtype == DType::BF16 || W.dtype == DType::F16) {
        for (int64_t t = 0; t < T; ++t) y[t * out + r] = dot_float_row(W, r, x + t * in);
        continue;
      }
#endif
      if (W.dtype == DType::F32) {
        wr = reinterpret_cast<const float*>(W.row(r));
      } else {
        buf.resize(static_cast<size_t>(in));
        (void)dequantize_row(W.dtype, W.row(r), buf.data(), in);
        wr = buf.data();
      }
      for (int64_t t = 0; t < T; ++t) y[t * out + r] = dot_f32(wr, x + t * in, in);
    }
  }, 16);
}
}  // namespace

// GEMFORGE_FLOAT_ACTIVATIONS=1: quantized weights are dequantized and
// multiplied with float32 activations, skipping the int8 rounding of the
// activations that llama.cpp also does. Slower; the exact product of the
// quantized model, for telling near-ties from errors (bench/llama_agreement.py).
bool float_activations() {
  static const bool on = [] {
    const char* e = std::getenv("GEMFORGE_FLOAT_ACTIVATIONS");
    return e && std::string(e) == "1";
  }();
  return on;
}

void matmul(const TensorView& W, const float* x, int64_t T, float* y) {
  const int64_t out = W.rows(), in = W.cols();
  if (float_activations()) {
    matmul_float(W, x, T, y);
    return;
  }
  if (kquant_supported(W.dtype) && in % 256 == 0) {
    matmul_kquant(W, x, T, y);
    return;
  }
  if (is_q32(W.dtype)) {
    std::vector<QActs> acts(static_cast<size_t>(T));
    parallel_for(T, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) quantize_acts(x + t * in, in, acts[static_cast<size_t>(t)]);
    });
    const size_t row_bytes = W.row_bytes();
    if (T >= 4 && prefill_q32_avx512(W, acts, T, y)) return;
#if GF_CPU_AVX2
    if (T >= 4) {
      // Prefill: rows unpacked to int8 + scales, row x token tiles.
      parallel_for(out, [&](int64_t b, int64_t e) {
        thread_local std::vector<int8_t> uq;
        thread_local std::vector<float> ud;
        uq.resize(static_cast<size_t>(kRowTile * in));
        ud.resize(static_cast<size_t>(kRowTile * in / 32));
        for (int64_t r0 = b; r0 < e; r0 += kRowTile) {
          const int64_t rn = std::min(kRowTile, e - r0);
          for (int64_t i = 0; i < rn; ++i)
            unpack_row_i8(W.dtype, W.data + static_cast<size_t>(r0 + i) * row_bytes, in, uq.data() + i * in, ud.data() + i * (in / 32));
          for (int64_t t0 = 0; t0 < T; t0 += kTokTile) {
            const int64_t t1 = std::min(T, t0 + kTokTile);
            for (int64_t i = 0; i < rn; ++i) {
              const int8_t* q = uq.data() + i * in;
              const float* d = ud.data() + i * (in / 32);
              float* yr = y + r0 + i;
              int64_t t = t0;
              for (; t + 4 <= t1; t += 4) {
                const QActs* four[4] = {&acts[static_cast<size_t>(t)], &acts[static_cast<size_t>(t + 1)],
                                        &acts[static_cast<size_t>(t + 2)], &acts[static_cast<size_t>(t + 3)]};
                float res[4];
                dot_unpacked_x4(q, d, in, four, res);
#pragma GCC unroll 4
                for (int k = 0; k < 4; ++k) yr[(t + k) * out] = res[k];
              }
              for (; t < t1; ++t) yr[t * out] = dot_unpacked(q, d, in, acts[static_cast<size_t>(t)]);
            }
          }
        }
      }, 16);
      return;
    }
#endif
    // A few tokens: each row once from memory, dotted with every token.
    parallel_for(out, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        for (int64_t t = 0; t < T; ++t) matvec_q32(W.dtype, W.data, row_bytes, r, r + 1, acts[static_cast<size_t>(t)], in, y + t * out);
    }, 16);
    return;
  }
  matmul_float(W, x, T, y);
}

GF_CPU_END
