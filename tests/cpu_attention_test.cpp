// The CPU attention kernel (grouped heads, 8-wide dots, split-key decode with
// merged partial softmaxes) against a direct double-precision softmax, over a
// paged cache whose block table is shuffled.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/cpu/attention.h"
#include "core/thread_pool.h"
#include "cpu_isa_param.h"

namespace gf {
namespace {

class CpuAttention : public test::CpuIsaTest {};

struct Case {
  int heads, kv_heads, head_dim;
  std::vector<int> seq_lens;   // tokens in the cache per sequence after the step
  std::vector<int> new_tokens; // tokens of this step per sequence (the last ones)
  int window = 0;
  float softcap = 0;
};

void check(const Case& c) {
  const int bs = 16;
  const int64_t width = static_cast<int64_t>(c.kv_heads) * c.head_dim, cols = static_cast<int64_t>(c.heads) * c.head_dim;
  int64_t blocks = 0;
  for (int n : c.seq_lens) blocks += (n + bs - 1) / bs;
  std::vector<int32_t> perm(static_cast<size_t>(blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> K(static_cast<size_t>(blocks * bs * width)), V(K.size());
  for (auto& x : K) x = nd(rng);
  for (auto& x : V) x = nd(rng);
  KvPool kv{K.data(), V.data(), blocks, bs, width};

  BatchLayout L;
  size_t next = 0;
  for (size_t s = 0; s < c.seq_lens.size(); ++s) {
    std::vector<int32_t> table;
    for (int b = 0; b < (c.seq_lens[s] + bs - 1) / bs; ++b) table.push_back(perm[next++]);
    L.block_tables.push_back(table);
    L.seq_lens.push_back(c.seq_lens[s]);
    for (int p = c.seq_lens[s] - c.new_tokens[s]; p < c.seq_lens[s]; ++p) {
      L.positions.push_back(p);
      L.token_seq.push_back(static_cast<int32_t>(s));
    }
  }
  const int64_t T = L.num_tokens();
  std::vector<float> q(static_cast<size_t>(T * cols)), out(q.size(), NAN);
  for (auto& x : q) x = nd(rng) * 0.5f;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  AttentionParams p{c.heads, c.kv_heads, c.head_dim, c.window, scale, c.softcap};
  cpu::attention(q.data(), kv, p, L, out.data());

  const int group = c.heads / c.kv_heads;
  for (int64_t t = 0; t < T; ++t) {
    const auto& table = L.block_tables[static_cast<size_t>(L.token_seq[static_cast<size_t>(t)])];
    const int64_t pos = L.positions[static_cast<size_t>(t)];
    const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
    for (int h = 0; h < c.heads; ++h) {
      const int64_t off = static_cast<int64_t>(h / group) * c.head_dim;
      std::vector<double> s;
      for (int64_t j = lo; j <= pos; ++j) {
        const float* k = K.data() + (static_cast<int64_t>(table[static_cast<size_t>(j / bs)]) * bs + j % bs) * width + off;
        double a = 0;
        for (int d = 0; d < c.head_dim; ++d) a += static_cast<double>(q[static_cast<size_t>(t * cols + h * c.head_dim + d)]) * k[d];
        a *= scale;
        if (c.softcap > 0) a = c.softcap * std::tanh(a / c.softcap);
        s.push_back(a);
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int d = 0; d < c.head_dim; ++d) {
        double o = 0;
        for (int64_t j = lo; j <= pos; ++j) {
          const float* v = V.data() + (static_cast<int64_t>(table[static_cast<size_t>(j / bs)]) * bs + j % bs) * width + off;
          o += s[static_cast<size_t>(j - lo)] * v[d];
        }
        o /= sum;
        ASSERT_NEAR(out[static_cast<size_t>(t * cols + h * c.head_dim + d)], o, 2e-5 * (1 + std::fabs(o)))
            << "token " << t << " head " << h << " dim " << d;
      }
    }
  }
}

TEST_P(CpuAttention, PrefillGroupedHeadsMatchesReference) {
  check({4, 1, 256, {40}, {40}});                  // Gemma 3 270M: 4 heads share one KV head
  check({8, 1, 32, {37}, {37}});                   // 8 heads per KV head: two passes of 4
  check({6, 2, 40, {23}, {23}});                   // 3 per group; head_dim not a multiple of 16
  check({8, 8, 24, {19}, {19}});                   // MHA, head_dim with an 8-wide tail
}

TEST_P(CpuAttention, SlidingWindowSoftcapAndManySequences) {
  check({4, 2, 64, {50, 9, 33}, {50, 1, 4}, 16, 0.0f});
  check({4, 2, 64, {50, 9, 33}, {7, 9, 1}, 0, 50.0f});
}

TEST_P(CpuAttention, LongDecodeSplitAcrossThreadsMatchesReference) {
  const int saved = num_threads();
  set_num_threads(4);  // splits > 1 even for one token and one KV head
  check({4, 1, 256, {1500}, {1}});
  check({2, 1, 64, {1030, 700}, {1, 1}});
  check({4, 1, 256, {1500}, {1}, 512});  // window caps the split length
  set_num_threads(saved);
}

GF_INSTANTIATE_CPU_ISA(CpuAttention);

}  // namespace
}  // namespace gf
