#include "cli/loss_plot.h"

#include <fstream>
#include <map>

#include "cli/plot.h"

namespace gf::cli {

using json = nlohmann::json;

Result<json> loss_plot_spec(const std::string& metrics_jsonl) {
  std::ifstream in(metrics_jsonl);
  if (!in) return Err("cannot read " + metrics_jsonl);
  // By step: a resumed run may repeat steps; its later line wins.
  std::map<int64_t, double> train, eval;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number() || !j.contains("loss") || !j["loss"].is_number())
      return Err(metrics_jsonl + ":" + std::to_string(n) + ": not a {\"step\": n, \"loss\": x, ...} line");
    const int64_t step = j["step"].get<int64_t>();
    train[step] = j["loss"].get<double>();
    if (j.contains("eval_loss") && j["eval_loss"].is_number()) eval[step] = j["eval_loss"].get<double>();
  }
  if (train.empty()) return Err(metrics_jsonl + " has no steps");
  json series = json::array();
  for (const auto& [label, points] : {std::pair<const char*, const std::map<int64_t, double>&>{"train", train}, {"eval", eval}}) {
    if (points.empty()) continue;
    json s = {{"label", label}, {"group", series.size()}, {"style", "-"}, {"x", json::array()}, {"y", json::array()}};
    for (const auto& [step, loss] : points) {
      s["x"].push_back(step);
      s["y"].push_back(loss);
    }
    series.push_back(s);
  }
  json panel = {{"kind", "line"}, {"title", "Loss"}, {"xlabel", "step"}, {"ylabel", "loss"}, {"series", series}};
  return json{{"title", "gemforge finetune"}, {"dpi", 100}, {"panels", {panel}}};
}

Status plot_loss(const std::string& dir) {
  auto spec = loss_plot_spec(dir + "/metrics.jsonl");
  if (!spec.ok()) return spec.status();
  return render_plot(*spec, dir + "/loss.png");
}

}  // namespace gf::cli
