// The sampling op's contract and its host (float32) reference: one token id
// per logits row, picked on the backend so that a decode step downloads ids,
// not a vocabulary of floats per sequence. Greedy is argmax (ties go to the
// lowest id); otherwise top-k, softmax at the temperature, top-p, min-p, then
// a draw. The draw is counter-based (a hash of the request's seed and the
// index of the draw), so a sequence's n-th sample does not depend on which
// backend, batch or path (device or host) drew the earlier ones. The CUDA
// backend implements the same algorithm (src/backend/cuda/sample_kernel.cuh).
// This header is C++17 (nvcc includes it).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#if defined(__CUDACC__)
#define GF_HD __host__ __device__
#else
#define GF_HD
#endif

namespace gf {

// How one row is turned into a token.
struct RowSampling {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  uint64_t seed = 0;
  uint64_t draw = 0;         // index of this draw in the sequence (0 for its first token)
  int top_logprobs = -1;     // >= 0: also the chosen token's log-prob and this many alternatives
  bool host = false;         // the caller samples (penalties, ...): return the logits row instead
  // Structured outputs: the tokens that may be drawn (bit i of word i/64 =
  // token i; tokens past allowed_words * 64 may not), host memory valid during
  // the sample call; null: all. The others are -infinity before sampling (and
  // so in the log-probs and in a row returned to the host).
  const uint64_t* allowed = nullptr;
  int64_t allowed_words = 0;
};

struct SampledToken {
  int32_t id = -1;                               // -1: not picked here, `logits` holds the row
  float logprob = 0.0f;                          // of the model's distribution (before sampling transforms)
  std::vector<std::pair<int32_t, float>> top;    // best first
  std::vector<float> logits;                     // only when id == -1
};

// A uniform double in [0, 1) for draw `draw` of seed `seed` (splitmix64 of both).
GF_HD inline uint64_t sample_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
GF_HD inline double sample_uniform(uint64_t seed, uint64_t draw) {
  const uint64_t h = sample_mix64(sample_mix64(seed) + (draw + 1) * 0x9e3779b97f4a7c15ull);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

// Greedy: the highest logit, ties to the lowest id.
int32_t argmax(const float* logits, int64_t n);

// The reference algorithm on one row (not modified). `scratch` is reused across calls.
int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p, std::vector<std::pair<float, int32_t>>& scratch);

// Log-softmax helpers over a row (double accumulation).
double log_sum_exp(const float* logits, int64_t n);
double token_logprob(const float* logits, int64_t n, int32_t id);
// The k highest (id, logprob) pairs, best first (ties: lowest id).
std::vector<std::pair<int32_t, double>> top_logprobs(const float* logits, int64_t n, int k);
// t.logprob and t.top for the chosen t.id, from the row as the model gave it.
void fill_logprobs(const float* logits, int64_t vocab, int top_n, SampledToken& t);

// Sets logits[i] to -infinity for every token i whose bit in `allowed` (`words`
// words) is clear or past its end.
void apply_allowed(const uint64_t* allowed, int64_t words, float* logits, int64_t vocab);

// The host implementation of Backend::sample over rows of float32 logits.
void sample_rows_host(const float* logits, int64_t vocab, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out);

}  // namespace gf
