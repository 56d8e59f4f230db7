// CPU attention. The query heads that share a KV head (grouped-query
// attention) are handled together, so each K and V row is read once for the
// whole group; dot products and the weighted sum of V rows run 8 floats wide.
// Long single-token decodes split the keys across threads and merge the
// partial softmaxes (max, sum, weighted V) exactly as flash-decoding does.
#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/simd_avx2.h"
#include "core/thread_pool.h"

GF_CPU_BEGIN
namespace {

// Up to this many query heads share one pass over the keys (register budget).
constexpr int kMaxGroup = 4;
// A split of the keys is at least this long (below, threads cost more than they save).
constexpr int64_t kMinSplitKeys = 256;

struct KeyRange {
  const float* k;
  const float* v;
  const int32_t* table;
  int block_size;
  int64_t width;
  const float* krow(int64_t j) const { return k + slot(j) * width; }
  const float* vrow(int64_t j) const { return v + slot(j) * width; }
  int64_t slot(int64_t j) const { return static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size; }
};

#if GF_CPU_AVX512
// NK keys x G heads, 16 floats at a time: each K chunk is loaded once for
// the G heads and each q chunk once for the NK keys. A (key, head) score does
// the same operations whatever NK is, so prefill and decode agree bit for bit.
template <int G, int NK>
void scores_block(const float* const* q, const KeyRange& kr, int64_t off, int hd, int64_t j0, int64_t lo, float* const* s) {
  const float* k[NK];
  for (int n = 0; n < NK; ++n) k[n] = kr.krow(j0 + n) + off;
  __m512 acc[NK][G];
  for (int n = 0; n < NK; ++n)
    for (int g = 0; g < G; ++g) acc[n][g] = _mm512_setzero_ps();
  for (int d = 0; d < hd; d += 16) {
    __m512 qv[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) qv[g] = _mm512_loadu_ps(q[g] + d);
#pragma GCC unroll 4
    for (int n = 0; n < NK; ++n) {
      const __m512 kv = _mm512_loadu_ps(k[n] + d);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[n][g] = _mm512_fmadd_ps(qv[g], kv, acc[n][g]);
    }
  }
  for (int n = 0; n < NK; ++n)
    for (int g = 0; g < G; ++g) s[g][j0 + n - lo] = simd::hsum16(acc[n][g]);
}
#endif

// s[g][j - lo] = q_g · k_j for keys lo..hi-1 (head_dim hd, offset `off` in the row).
template <int G>
void scores(const float* const* q, const KeyRange& kr, int64_t off, int hd, int64_t lo, int64_t hi, float* const* s) {
#if GF_CPU_AVX512
  if (hd % 16 == 0) {
    int64_t j = lo;
    for (; j + 4 <= hi; j += 4) scores_block<G, 4>(q, kr, off, hd, j, lo, s);
    for (; j < hi; ++j) scores_block<G, 1>(q, kr, off, hd, j, lo, s);
    return;
  }
#endif
  for (int64_t j = lo; j < hi; ++j) {
    const float* k = kr.krow(j) + off;
#if GF_CPU_AVX2
    if (hd % 8 == 0) {
      __m256 acc[G];
      for (auto& a : acc) a = _mm256_setzero_ps();
      for (int d = 0; d < hd; d += 8) {
        const __m256 kv = _mm256_loadu_ps(k + d);
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + d), kv, acc[g]);
      }
      for (int g = 0; g < G; ++g) s[g][j - lo] = simd::hsum(acc[g]);
      continue;
    }
#endif
    for (int g = 0; g < G; ++g) {
      float a = 0;
      for (int d = 0; d < hd; ++d) a += q[g][d] * k[d];
      s[g][j - lo] = a;
    }
  }
}

// o_g = sum_j w[g][j - lo] v_j (overwrites o).
template <int G>
void weighted_v(const float* const* w, const KeyRange& kr, int64_t off, int hd, int64_t lo, int64_t hi, float* const* o) {
  int d0 = 0;
#if GF_CPU_AVX512
  // 64 output floats per pass (16 accumulators for 4 heads). Per output
  // element the same FMAs in the same key order as the 8-wide loop below.
  for (; d0 + 64 <= hd; d0 += 64) {
    __m512 acc[G][4];
    for (auto& a : acc) a[0] = a[1] = a[2] = a[3] = _mm512_setzero_ps();
    for (int64_t j = lo; j < hi; ++j) {
      const float* v = kr.vrow(j) + off + d0;
      const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32), v3 = _mm512_loadu_ps(v + 48);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512 p = _mm512_set1_ps(w[g][j - lo]);
        acc[g][0] = _mm512_fmadd_ps(p, v0, acc[g][0]);
        acc[g][1] = _mm512_fmadd_ps(p, v1, acc[g][1]);
        acc[g][2] = _mm512_fmadd_ps(p, v2, acc[g][2]);
        acc[g][3] = _mm512_fmadd_ps(p, v3, acc[g][3]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < 4; ++c) _mm512_storeu_ps(o[g] + d0 + 16 * c, acc[g][c]);
  }
#endif
#if GF_CPU_AVX2
  for (; d0 + 16 <= hd; d0 += 16) {
    __m256 acc[G][2];
    for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
    for (int64_t j = lo; j < hi; ++j) {
      const float* v = kr.vrow(j) + off + d0;
      const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m256 p = _mm256_broadcast_ss(w[g] + (j - lo));
        acc[g][0] = _mm256_fmadd_ps(p, v0, acc[g][0]);
        acc[g][1] = _mm256_fmadd_ps(p, v1, acc[g][1]);
      }
    }
    for (int g = 0; g < G; ++g) {
      _mm256_storeu_ps(o[g] + d0, acc[g][0]);
      _mm256_storeu_ps(o[g] + d0 + 8, acc[g][1]);
    }
  }
#endif
  for (int g = 0; g < G; ++g) std::fill(o[g] + d0, o[g] + hd, 0.0f);
  for (int64_t j = lo; j < hi; ++j) {
    const float* v = kr.vrow(j) + off;
    for (int g = 0; g < G; ++g)
      for (int d = d0; d < hd; ++d) o[g][d] += w[g][j - lo] * v[d];
  }
}

// One (token, group of query heads, key range) piece: unnormalised output
// o_g = sum_j exp(s_j - m_g) v_j with its max m_g and sum l_g.
template <int G>
void attend_range(const float* const* q, const KeyRange& kr, int64_t off, const AttentionParams& p, int64_t lo, int64_t hi,
                  float* const* o, float* m, float* l) {
  thread_local std::vector<float> buf;
  const int64_t n = hi - lo;
  buf.resize(static_cast<size_t>(G * n));
  float* s[G];
  for (int g = 0; g < G; ++g) s[g] = buf.data() + g * n;
  scores<G>(q, kr, off, p.head_dim, lo, hi, s);
  for (int g = 0; g < G; ++g) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      float x = s[g][j] * p.scale;
      if (p.softcap > 0) x = p.softcap * std::tanh(x / p.softcap);
      s[g][j] = x;
      mx = std::max(mx, x);
    }
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += (s[g][j] = std::exp(s[g][j] - mx));
    m[g] = mx;
    l[g] = sum;
  }
  weighted_v<G>(s, kr, off, p.head_dim, lo, hi, o);
}

void attend(int g_count, const float* const* q, const KeyRange& kr, int64_t off, const AttentionParams& p, int64_t lo, int64_t hi,
            float* const* o, float* m, float* l) {
  switch (g_count) {
    case 1: attend_range<1>(q, kr, off, p, lo, hi, o, m, l); break;
    case 2: attend_range<2>(q, kr, off, p, lo, hi, o, m, l); break;
    case 3: attend_range<3>(q, kr, off, p, lo, hi, o, m, l); break;
    default: attend_range<4>(q, kr, off, p, lo, hi, o, m, l); break;
  }
}

}  // namespace

void attention(const float* q, const KvPool& kv, const AttentionParams& p, const BatchLayout& layout, float* out) {
  const int group = p.num_heads / p.num_kv_heads;
  const int hd = p.head_dim;
  const int64_t T = layout.num_tokens();
  const int64_t cols = static_cast<int64_t>(p.num_heads) * hd;
  const int passes = (group + kMaxGroup - 1) / kMaxGroup;  // head groups per KV head
  const int64_t units = T * p.num_kv_heads * passes;
  // Few units (decode) and long contexts: split the keys so every thread works.
  int64_t max_len = 0;
  for (int64_t t = 0; t < T; ++t) max_len = std::max<int64_t>(max_len, layout.positions[static_cast<size_t>(t)] + 1);
  if (p.sliding_window > 0) max_len = std::min<int64_t>(max_len, p.sliding_window);
  int64_t splits = 1;
  if (units < num_threads()) splits = std::clamp<int64_t>(max_len / kMinSplitKeys, 1, (num_threads() + units - 1) / units);

  // Partial results of the splits: [unit, split] x (kMaxGroup x (hd + 2)).
  std::vector<float> part(splits > 1 ? static_cast<size_t>(units * splits * kMaxGroup * (hd + 2)) : 0);
  parallel_for(units * splits, [&](int64_t b, int64_t e) {
    for (int64_t job = b; job < e; ++job) {
      const int64_t unit = job / splits, split = job % splits;
      const int64_t t = unit / (p.num_kv_heads * passes);
      const int kvh = static_cast<int>(unit / passes % p.num_kv_heads);
      const int h0 = kvh * group + static_cast<int>(unit % passes) * kMaxGroup;
      const int g_count = std::min(kMaxGroup, kvh * group + group - h0);
      const int64_t pos = layout.positions[static_cast<size_t>(t)];
      const int64_t lo = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
      const int64_t len = pos + 1 - lo;
      const int64_t s_lo = lo + len * split / splits, s_hi = lo + len * (split + 1) / splits;
      const auto& table = layout.block_tables[static_cast<size_t>(layout.token_seq[static_cast<size_t>(t)])];
      const KeyRange kr{static_cast<const float*>(kv.k), static_cast<const float*>(kv.v), table.data(), kv.block_size, kv.width};
      const float* qs[kMaxGroup];
      float* os[kMaxGroup];
      float m[kMaxGroup], l[kMaxGroup];
      for (int g = 0; g < g_count; ++g) {
        qs[g] = q + t * cols + static_cast<int64_t>(h0 + g) * hd;
        os[g] = splits > 1 ? part.data() + (job * kMaxGroup + g) * (hd + 2) : out + t * cols + static_cast<int64_t>(h0 + g) * hd;
      }
      attend(g_count, qs, kr, static_cast<int64_t>(kvh) * hd, p, s_lo, s_hi, os, m, l);
      for (int g = 0; g < g_count; ++g) {
        if (splits > 1) {
          os[g][hd] = m[g];
          os[g][hd + 1] = l[g];
        } else {
          const float inv = 1.0f / l[g];
          for (int d = 0; d < hd; ++d) os[g][d] *= inv;
        }
      }
    }
  });
  if (splits == 1) return;
  // Merge the splits of each unit: rescale each by exp(m_s - max m).
  for (int64_t unit = 0; unit < units; ++unit) {
    const int64_t t = unit / (p.num_kv_heads * passes);
    const int kvh = static_cast<int>(unit / passes % p.num_kv_heads);
    const int h0 = kvh * group + static_cast<int>(unit % passes) * kMaxGroup;
    const int g_count = std::min(kMaxGroup, kvh * group + group - h0);
    for (int g = 0; g < g_count; ++g) {
      float mx = -INFINITY;
      for (int64_t s = 0; s < splits; ++s) mx = std::max(mx, part[static_cast<size_t>(((unit * splits + s) * kMaxGroup + g) * (hd + 2) + hd)]);
      float* o = out + t * cols + static_cast<int64_t>(h0 + g) * hd;
      std::fill(o, o + hd, 0.0f);
      float total = 0;
      for (int64_t s = 0; s < splits; ++s) {
        const float* ps = part.data() + ((unit * splits + s) * kMaxGroup + g) * (hd + 2);
        const float c = std::exp(ps[hd] - mx);
        total += c * ps[hd + 1];
        for (int d = 0; d < hd; ++d) o[d] += c * ps[d];
      }
      const float inv = 1.0f / total;
      for (int d = 0; d < hd; ++d) o[d] *= inv;
    }
  }
}

GF_CPU_END
