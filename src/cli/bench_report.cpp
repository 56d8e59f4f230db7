#include "cli/bench_report.h"

#include <algorithm>

namespace gf::cli {

using json = nlohmann::json;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

json summarise(const std::vector<RequestResult>& rs, double wall) {
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t out = 0, in = 0, ok = 0;
  for (const auto& r : rs) {
    if (!r.ok) continue;
    ++ok;
    ttft.push_back(r.ttft);
    e2e.push_back(r.e2e);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
    if (r.output_tokens > 1) tpot.push_back((r.e2e - r.ttft) / static_cast<double>(r.output_tokens - 1));
    out += r.output_tokens;
    in += r.prompt_tokens;
  }
  auto stats = [&](const std::vector<double>& v) {
    double mean = 0;
    for (double x : v) mean += x;
    mean = v.empty() ? 0 : mean / static_cast<double>(v.size());
    return json{{"mean_ms", mean * 1e3}, {"p50_ms", percentile(v, 50) * 1e3}, {"p90_ms", percentile(v, 90) * 1e3}, {"p99_ms", percentile(v, 99) * 1e3}};
  };
  return {{"completed", ok}, {"failed", static_cast<int64_t>(rs.size()) - ok}, {"duration_s", wall}, {"request_throughput", ok / wall},
          {"output_throughput", static_cast<double>(out) / wall}, {"total_token_throughput", static_cast<double>(out + in) / wall},
          {"ttft", stats(ttft)}, {"tpot", stats(tpot)}, {"itl", stats(itl)}, {"e2e", stats(e2e)}};
}

}  // namespace gf::cli
