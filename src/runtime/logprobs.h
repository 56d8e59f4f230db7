// Log-softmax helpers over a row of logits (computed in double for stability).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace gf {

double log_sum_exp(const float* logits, int64_t n);
double token_logprob(const float* logits, int64_t n, int32_t id);
// The k highest (id, logprob) pairs, best first.
std::vector<std::pair<int32_t, double>> top_logprobs(const float* logits, int64_t n, int k);

}  // namespace gf
