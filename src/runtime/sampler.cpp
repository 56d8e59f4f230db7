#include "runtime/sampler.h"

#include <cstddef>
#include <limits>
#include <unordered_map>

namespace gf {

bool Sampler::needs_logits() const {
  return p_.repetition_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f || !p_.logit_bias.empty();
}

RowSampling Sampler::row(uint64_t draw, int top_logprobs) const {
  RowSampling r;
  r.temperature = p_.temperature;
  r.top_k = p_.top_k;
  r.top_p = p_.top_p;
  r.min_p = p_.min_p;
  r.seed = p_.seed;
  r.draw = draw;
  r.top_logprobs = top_logprobs;
  r.host = needs_logits();
  return r;
}

int32_t Sampler::sample(float* logits, int64_t vocab, const std::vector<int32_t>& history, uint64_t draw) {
  for (const auto& [id, b] : p_.logit_bias)
    if (id >= 0 && id < vocab) logits[id] = b <= -100.0f ? -std::numeric_limits<float>::infinity() : logits[id] + b;
  if (needs_logits()) {  // penalties over the recent history
    size_t from = 0;
    if (p_.penalty_last_n >= 0 && history.size() > static_cast<size_t>(p_.penalty_last_n)) from = history.size() - static_cast<size_t>(p_.penalty_last_n);
    std::unordered_map<int32_t, int> counts;
    for (size_t i = from; i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [id, c] : counts) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[id];
      if (p_.repetition_penalty != 1.0f) l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
      l -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(c);
    }
  }
  return sample_row(logits, vocab, row(draw), cand_);
}

}  // namespace gf
