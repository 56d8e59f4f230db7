// The serving report shared by `bench serve` (over HTTP) and `bench offline`
// (the engine in-process): per-request timings in, vLLM-style summary out.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gf::cli {

struct RequestResult {
  bool ok = false;
  double ttft = 0, e2e = 0;
  std::vector<double> itl;
  int64_t output_tokens = 0, prompt_tokens = 0;
  std::string error;
};

double percentile(std::vector<double> v, double p);

// completed/failed, throughputs, and TTFT/TPOT/ITL/E2E mean and percentiles (ms).
nlohmann::json summarise(const std::vector<RequestResult>& rs, double wall);

}  // namespace gf::cli
