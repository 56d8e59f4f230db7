#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace gf {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

int32_t Sampler::sample(float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  // Penalties over the recent history.
  if (p_.repetition_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
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
  if (p_.temperature <= 0.0f) return argmax(logits, vocab);

  // Candidates: top-k first (cheap partial sort), then softmax, top-p, min-p.
  cand_.resize(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) cand_[static_cast<size_t>(i)] = {logits[i], static_cast<int32_t>(i)};
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t k = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < k) k = static_cast<size_t>(p_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(), better);
  cand_.resize(k);
  const float mx = cand_[0].first;
  double sum = 0;
  std::vector<double> prob(k);
  for (size_t i = 0; i < k; ++i) sum += (prob[i] = std::exp((cand_[i].first - mx) / p_.temperature));
  for (auto& p : prob) p /= sum;
  size_t keep = k;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) { keep = i + 1; break; }
    }
  }
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    size_t n = 1;
    while (n < keep && prob[n] >= floor) ++n;
    keep = n;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += prob[i];
  std::uniform_real_distribution<double> dist(0.0, total);
  double r = dist(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace gf
