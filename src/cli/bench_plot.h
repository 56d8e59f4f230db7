// Pictures of benchmark results: the --json output of `bench serve` (TTFT,
// TPOT, ITL percentiles and throughput against request rate), `bench offline`
// (one summary per run, as bars) and `bench --batch` (tokens/s against batch
// size), several runs (engines) overlaid. `gemforge bench plot` and the
// commands' --plot flag draw them through cli/plot.h.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace gf::cli {

struct BenchRun {
  std::string label;    // the legend entry
  nlohmann::json json;  // what the command's --json wrote
};

// "serve", "offline" or "batch": which command's --json j is; an error otherwise.
Result<std::string> bench_kind(const nlohmann::json& j);
// The plot spec (cli/plot.h) of runs of one kind; an error names the run whose JSON does not fit.
Result<nlohmann::json> bench_plot_spec(const std::vector<BenchRun>& runs);
// bench_plot_spec, drawn into png.
Status plot_bench(const std::vector<BenchRun>& runs, const std::string& png);

// The end of a bench command: writes result to json_out and draws it into
// plot_out (each when not empty); returns the command's exit code.
int write_bench_result(const nlohmann::json& result, const std::string& label, const std::string& json_out, const std::string& plot_out);

}  // namespace gf::cli
