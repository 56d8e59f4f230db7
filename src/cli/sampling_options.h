// The sampling options run, chat and serve share (one block, one meaning).
// For run and chat they are the reply's settings; for serve they are the
// defaults of requests that leave a field out.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace gf::cli {

struct SamplingOptions {
  SamplingParams params;
  std::optional<uint64_t> seed;  // unset: 0 for run/chat (reproducible), random per request for serve
  std::vector<std::string> stop;
};

// The defaults shown by --help are the values `o` holds when this is called.
void add_sampling_options(CLI::App* cmd, SamplingOptions& o);

// The parameters with the seed resolved (`fallback` when --seed was not given).
SamplingParams resolved(const SamplingOptions& o, uint64_t fallback = 0);

}  // namespace gf::cli
