#include "backend/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/backend.h"

namespace gf {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p, std::vector<std::pair<float, int32_t>>& cand) {
  if (p.temperature <= 0.0f) return argmax(logits, vocab);
  // Candidates: top-k first (cheap partial sort), then softmax, top-p, min-p.
  // Banned tokens (-inf: logit_bias, structured outputs) have no probability:
  // leaving them out changes nothing but the cost of the sort.
  cand.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] != -INFINITY) cand.emplace_back(logits[i], static_cast<int32_t>(i));
  if (cand.empty()) return argmax(logits, vocab);
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t k = cand.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < k) k = static_cast<size_t>(p.top_k);
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end(), better);
  cand.resize(k);
  const float mx = cand[0].first;
  double sum = 0;
  std::vector<double> prob(k);
  for (size_t i = 0; i < k; ++i) sum += (prob[i] = std::exp((cand[i].first - mx) / p.temperature));
  for (auto& q : prob) q /= sum;
  size_t keep = k;
  if (p.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p.top_p) { keep = i + 1; break; }
    }
  }
  if (p.min_p > 0.0f) {
    const double floor = p.min_p * prob[0];
    size_t n = 1;
    while (n < keep && prob[n] >= floor) ++n;
    keep = n;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += prob[i];
  double r = sample_uniform(p.seed, p.draw) * total;
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return cand[i].second;
  }
  return cand[keep - 1].second;
}

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

void fill_logprobs(const float* row, int64_t vocab, int top_n, SampledToken& t) {
  if (top_n < 0) return;
  const double lse = log_sum_exp(row, vocab);
  t.top.clear();
  for (auto& [id, lp] : top_logprobs(row, vocab, top_n)) t.top.emplace_back(id, static_cast<float>(lp));
  t.logprob = static_cast<float>(row[t.id] - lse);
}

void apply_allowed(const uint64_t* allowed, int64_t words, float* logits, int64_t vocab) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t base = 0; base < vocab; base += 64) {  // a word at a time: most are all set or all clear
    const uint64_t b = base / 64 < words ? allowed[base / 64] : 0;
    const int64_t end = std::min<int64_t>(base + 64, vocab);
    if (b == ~uint64_t{0}) continue;
    if (b == 0) {
      std::fill(logits + base, logits + end, ninf);
      continue;
    }
    for (int64_t i = base; i < end; ++i)
      if (!(b >> (i - base) & 1)) logits[i] = ninf;
  }
}

void sample_rows_host(const float* logits, int64_t vocab, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) {
  out.assign(rows.size(), SampledToken{});
  std::vector<std::pair<float, int32_t>> scratch;
  std::vector<float> masked;
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* row = logits + static_cast<int64_t>(r) * vocab;
    SampledToken& t = out[r];
    if (rows[r].allowed) {
      masked.assign(row, row + vocab);
      apply_allowed(rows[r].allowed, rows[r].allowed_words, masked.data(), vocab);
      row = masked.data();
    }
    if (rows[r].host) {
      t.logits.assign(row, row + vocab);
      continue;
    }
    t.id = sample_row(row, vocab, rows[r], scratch);
    fill_logprobs(row, vocab, rows[r].top_logprobs, t);
  }
}

void Backend::sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) {
  std::vector<float> all(static_cast<size_t>(logits.rows * logits.cols));
  download(logits, all.data());
  sample_rows_host(all.data(), logits.cols, rows, out);
}

}  // namespace gf
