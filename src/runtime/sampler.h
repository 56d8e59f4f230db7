// Token sampling as users of llama.cpp / vLLM expect it: penalties, then
// temperature, top-k, top-p, min-p, then a draw. temperature 0 is greedy
// (ties go to the lowest id). Without penalties a sequence is sampled by the
// backend's sampling op (ids out, see backend/sampling.h); with penalties its
// logits row comes to the host and this class applies them first. Both paths
// run the same algorithm with the same counter-based draw, so a request's
// n-th token depends only on its seed, n and the logits.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/sampling.h"

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
  // OpenAI's logit_bias: added to a token's logit before sampling (-100 or less bans it).
  std::vector<std::pair<int32_t, float>> logit_bias;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p) {}
  // Penalties need the history, and logit_bias the row: only the host can apply them.
  bool needs_logits() const;
  // The backend op's description of draw number `draw` (host = needs_logits()).
  RowSampling row(uint64_t draw, int top_logprobs = -1) const;
  // Draw number `draw` on the host. logits are modified in place (penalties). history: tokens so far.
  int32_t sample(float* logits, int64_t vocab, const std::vector<int32_t>& history, uint64_t draw);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace gf
