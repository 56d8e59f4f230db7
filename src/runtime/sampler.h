// Token sampling as users of llama.cpp / vLLM expect it: penalties, then
// temperature, top-k, top-p, min-p, then a draw from a seeded generator.
// temperature 0 is greedy (ties go to the lowest id).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace gf {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 64;             // 0 = off
  float top_p = 0.95f;        // 1 = off
  float min_p = 0.0f;         // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off (CTRL-style: divide positive logits, multiply negative)
  float presence_penalty = 0.0f;    // OpenAI-style, subtracted once per seen token
  float frequency_penalty = 0.0f;   // OpenAI-style, subtracted per occurrence
  int penalty_last_n = 64;          // window of history the penalties look at (-1 = all)
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  // logits are modified in place (penalties). history: tokens so far.
  int32_t sample(float* logits, int64_t vocab, const std::vector<int32_t>& history);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* logits, int64_t n);

}  // namespace gf
