// The loss curve `gemforge finetune` draws at the end of training: train and
// eval loss against the step, from DIR/metrics.jsonl, into DIR/loss.png.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace gf::cli {

// The plot spec (cli/plot.h) of a metrics.jsonl: a "train" series and, when
// the run evaluated, an "eval" series. An error names a malformed line.
Result<nlohmann::json> loss_plot_spec(const std::string& metrics_jsonl);
// loss_plot_spec(dir/metrics.jsonl) drawn into dir/loss.png.
Status plot_loss(const std::string& dir);

}  // namespace gf::cli
