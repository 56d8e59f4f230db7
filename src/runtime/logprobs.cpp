#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>

namespace gf {

double log_sum_exp(const float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(s);
}

double token_logprob(const float* x, int64_t n, int32_t id) { return x[id] - log_sum_exp(x, n); }

std::vector<std::pair<int32_t, double>> top_logprobs(const float* x, int64_t n, int k) {
  k = static_cast<int>(std::min<int64_t>(k, n));
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  const double lse = log_sum_exp(x, n);
  std::vector<std::pair<int32_t, double>> out;
  for (int i = 0; i < k; ++i) out.emplace_back(idx[static_cast<size_t>(i)], x[idx[static_cast<size_t>(i)]] - lse);
  return out;
}

}  // namespace gf
