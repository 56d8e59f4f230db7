#include "cli/bench_plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/plot.h"

namespace gf::cli {
namespace {

using json = nlohmann::json;

std::string number_label(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

json line_panel(const std::string& title, const std::string& xlabel, const std::string& ylabel) {
  // From zero: latencies and throughputs compared by eye need the axis' origin.
  return {{"kind", "line"}, {"title", title}, {"xlabel", xlabel}, {"ylabel", ylabel}, {"ymin", 0}, {"series", json::array()}};
}

json series(const std::string& label, int group, const std::string& style) {
  return {{"label", label}, {"group", group}, {"style", style}, {"x", json::array()}, {"y", json::array()}};
}

struct Latency {
  const char* key;
  const char* name;
};
constexpr Latency kLatencies[] = {{"ttft", "TTFT"}, {"tpot", "TPOT"}, {"itl", "ITL"}};

// bench serve: one point per request rate; "inf" (all at once) is drawn right of the largest finite rate.
json serve_spec(const std::vector<BenchRun>& runs) {
  double top = 0;
  for (const auto& r : runs)
    for (const auto& x : r.json.at("results"))
      if (x.at("request_rate").is_number()) top = std::max(top, x.at("request_rate").get<double>());
  const double inf_at = top > 0 ? top * 2 : 1;
  std::map<double, std::string> ticks;
  auto rate_x = [&](const json& x) {
    const json& rate = x.at("request_rate");
    const double v = rate.is_number() ? rate.get<double>() : inf_at;
    ticks[v] = rate.is_number() ? number_label(v) : "inf";
    return v;
  };
  const std::string rate_label = "request rate (req/s)";
  json panels = json::array();
  for (const auto& [key, name] : kLatencies) {
    json p = line_panel(std::string(name) + " against request rate", rate_label, std::string(name) + " (ms)");
    for (size_t g = 0; g < runs.size(); ++g)
      for (const char* pct : {"p50", "p99"}) {
        json s = series(runs[g].label + " " + pct, static_cast<int>(g), pct[1] == '5' ? "-" : "--");
        for (const auto& x : runs[g].json.at("results")) {
          s["x"].push_back(rate_x(x));
          s["y"].push_back(x.at(key).at(std::string(pct) + "_ms").get<double>());
        }
        p["series"].push_back(s);
      }
    panels.push_back(p);
  }
  json tput = line_panel("Output throughput against request rate", rate_label, "output tokens/s");
  for (size_t g = 0; g < runs.size(); ++g) {
    json s = series(runs[g].label, static_cast<int>(g), "-");
    for (const auto& x : runs[g].json.at("results")) {
      s["x"].push_back(rate_x(x));
      s["y"].push_back(x.at("output_throughput").get<double>());
    }
    tput["series"].push_back(s);
  }
  panels.push_back(tput);
  json xt = json::array();
  for (const auto& [v, l] : ticks) xt.push_back({v, l});
  for (auto& p : panels) {
    p["xticks"] = xt;
    p["xscale"] = "log";  // rates usually grow geometrically (1, 4, 16)
  }
  // Latency against throughput: the trade-off a server's sweep traces.
  for (const auto& [key, name] : {kLatencies[0], kLatencies[1]}) {  // TTFT and TPOT
    json p = line_panel(std::string(name) + " p50 against throughput", "output tokens/s", std::string(name) + " p50 (ms)");
    for (size_t g = 0; g < runs.size(); ++g) {
      json s = series(runs[g].label, static_cast<int>(g), "-");
      for (const auto& x : runs[g].json.at("results")) {
        s["x"].push_back(x.at("output_throughput").get<double>());
        s["y"].push_back(x.at(key).at("p50_ms").get<double>());
      }
      p["series"].push_back(s);
    }
    panels.push_back(p);
  }
  return {{"title", "bench serve"}, {"panels", panels}};
}

// bench offline: one summary per run, as grouped bars.
json offline_spec(const std::vector<BenchRun>& runs) {
  json panels = json::array();
  json tput = {{"kind", "bar"}, {"title", "Throughput"}, {"ylabel", "tokens/s"}, {"categories", {"output", "total"}}, {"series", json::array()}};
  for (const auto& r : runs)
    tput["series"].push_back({{"label", r.label}, {"y", {r.json.at("output_throughput").get<double>(), r.json.at("total_token_throughput").get<double>()}}});
  panels.push_back(tput);
  for (const auto& [key, name] : kLatencies) {
    json p = {{"kind", "bar"}, {"title", name}, {"ylabel", "ms"}, {"categories", {"mean", "p50", "p90", "p99"}}, {"series", json::array()}};
    for (const auto& r : runs) {
      json y = json::array();
      for (const char* stat : {"mean_ms", "p50_ms", "p90_ms", "p99_ms"}) y.push_back(r.json.at(key).at(stat).get<double>());
      p["series"].push_back({{"label", r.label}, {"y", y}});
    }
    panels.push_back(p);
  }
  return {{"title", "bench offline"}, {"panels", panels}};
}

// bench --batch: decode tokens/s and step time against the batch size.
json batch_spec(const std::vector<BenchRun>& runs) {
  json tps = line_panel("Batched decode throughput", "batch size", "tokens/s");
  json step = line_panel("Batched decode step time", "batch size", "ms per step");
  std::map<int, std::string> ticks;
  for (size_t g = 0; g < runs.size(); ++g) {
    std::vector<std::pair<int, json>> rows;
    for (const auto& [b, row] : runs[g].json.at("batch").items()) rows.emplace_back(std::stoi(b), row);
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    json a = series(runs[g].label, static_cast<int>(g), "-"), s = a;
    for (const auto& [b, row] : rows) {
      ticks[b] = std::to_string(b);
      a["x"].push_back(b);
      a["y"].push_back(row.at("tokens_per_s").get<double>());
      s["x"].push_back(b);
      s["y"].push_back(row.at("ms_per_step").get<double>());
    }
    tps["series"].push_back(a);
    step["series"].push_back(s);
  }
  json xt = json::array();
  for (const auto& [v, l] : ticks) xt.push_back({v, l});
  for (json* p : {&tps, &step}) {
    (*p)["xscale"] = "log";
    (*p)["xticks"] = xt;
  }
  return {{"title", "bench --batch"}, {"panels", {tps, step}}};
}

}  // namespace

Result<std::string> bench_kind(const json& j) {
  if (!j.is_object()) return Err("not a JSON object");
  if (j.contains("results") && j["results"].is_array()) return std::string("serve");
  if (j.contains("batch") && j["batch"].is_object()) return std::string("batch");
  if (j.contains("output_throughput") && j.contains("ttft")) return std::string("offline");
  auto bench_test = [](const std::string& k) { return k.size() > 2 && (k.rfind("pp", 0) == 0 || k.rfind("tg", 0) == 0) && std::isdigit(k[2]); };
  if (std::any_of(j.items().begin(), j.items().end(), [&](const auto& kv) { return bench_test(kv.key()); }))
    return Err("a `bench` result without --batch rows; plot `bench --batch 1,8,32 --json F` results");
  return Err("not the --json output of bench serve, bench offline or bench --batch");
}

Result<json> bench_plot_spec(const std::vector<BenchRun>& runs) {
  if (runs.empty()) return Err("no runs to plot");
  std::string kind;
  for (const auto& r : runs) {
    auto k = bench_kind(r.json);
    if (!k.ok()) return Err(r.label + ": " + k.status().message());
    if (!kind.empty() && *k != kind)
      return Err(r.label + " is a bench " + *k + " result and " + runs[0].label + " a bench " + kind + " result: plot one kind at a time");
    kind = *k;
  }
  auto build = [&](const std::vector<BenchRun>& rs) { return kind == "serve" ? serve_spec(rs) : kind == "offline" ? offline_spec(rs) : batch_spec(rs); };
  // A field missing or of the wrong type somewhere inside (json::at/get throw): name the run.
  for (const auto& r : runs) try {
      (void)build({r});
    } catch (const std::exception& e) {
      return Err(r.label + ": unexpected layout for a bench " + kind + " result (" + e.what() + ")");
    }
  json spec = build(runs);
  std::string names;
  for (const auto& r : runs) names += (names.empty() ? "" : ", ") + r.label;
  spec["title"] = spec["title"].get<std::string>() + ": " + names;
  return spec;
}

Status plot_bench(const std::vector<BenchRun>& runs, const std::string& png) {
  auto spec = bench_plot_spec(runs);
  if (!spec.ok()) return spec.status();
  return render_plot(*spec, png);
}

int write_bench_result(const json& result, const std::string& label, const std::string& json_out, const std::string& plot_out) {
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << result.dump(2) << "\n";
    if (!f) return fail(Err("cannot write " + json_out));
  }
  if (plot_out.empty()) return 0;
  Status s = plot_bench({{label, result}}, plot_out);
  if (!s.ok()) return fail(s);
  std::fprintf(stderr, "wrote %s (numbers in %s)\n", plot_out.c_str(), plot_spec_path(plot_out).c_str());
  return 0;
}

namespace {

struct PlotOptions {
  std::vector<std::string> files;
  std::string labels, out;
};

int run_bench_plot(const PlotOptions& o) {
  std::vector<std::string> labels;
  for (size_t i = 0; !o.labels.empty() && i <= o.labels.size();) {
    size_t j = std::min(o.labels.find(',', i), o.labels.size());
    labels.push_back(o.labels.substr(i, j - i));
    i = j + 1;
  }
  if (!labels.empty() && labels.size() != o.files.size())
    return fail(Err("--labels has " + std::to_string(labels.size()) + " names for " + std::to_string(o.files.size()) + " files"));
  std::vector<BenchRun> runs;
  for (size_t i = 0; i < o.files.size(); ++i) {
    const std::string& f = o.files[i];
    std::ifstream in(f);
    if (!in) return fail(Err("cannot read " + f));
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) return fail(Err(f + " is not valid JSON (expected the --json output of a bench command)"));
    runs.push_back({labels.empty() ? std::filesystem::path(f).stem().string() : labels[i], std::move(j)});
  }
  Status s = plot_bench(runs, o.out);
  if (!s.ok()) return fail(s);
  std::fprintf(stderr, "wrote %s (numbers in %s)\n", o.out.c_str(), plot_spec_path(o.out).c_str());
  return 0;
}

CommandRegistration reg(63, [](CLI::App& root) {
  CLI::App* bench = nullptr;
  for (CLI::App* sub : root.get_subcommands([](CLI::App* a) { return a->get_name() == "bench"; })) bench = sub;
  if (!bench) return;
  auto o = std::make_shared<PlotOptions>();
  CLI::App* c = bench->add_subcommand("plot", "Draw bench serve / offline / --batch --json results, several runs overlaid, as a PNG (needs matplotlib)");
  c->add_option("files", o->files, "--json files of one bench kind (one run, e.g. one engine, each)")->required();
  c->add_option("-o,--out", o->out, "PNG to write (the plotted numbers go to OUT.plot.json)")->required();
  c->add_option("--labels", o->labels, "Comma-separated legend names, one per file (default: the file names)");
  c->callback([o] { set_exit_code(run_bench_plot(*o)); });
});

}  // namespace
}  // namespace gf::cli
