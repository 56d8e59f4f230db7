// gemforge bench serve: drives a running OpenAI-compatible server (ours,
// llama-server, vLLM...) with Poisson arrivals at one or more request rates
// and reports TTFT, TPOT, ITL and end-to-end latency percentiles, request and
// token throughput, and cost per million output tokens, as vLLM's serving
// benchmark does. Prompts are random words of a given length, or lines of a file.
// Each rate gets its own prompts (drawn from the seed and the rate's index), so
// a later rate does not find the earlier rates' prompts in the server's prefix
// cache; the prefix-cache hit rate of each rate is read from the server's
// /metrics (gemforge's or vLLM's token counters; "n/a" for other servers).
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "cli/bench_plot.h"
#include "cli/bench_report.h"
#include "cli/command.h"
#include "cli/model_options.h"

namespace gf::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct BenchServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string model = "gemma";
  std::string rates = "1,2,4,inf";
  int num_prompts = 32;
  int input_words = 128;
  int output_tokens = 64;
  std::string prompt_file;
  int max_concurrency = 0;
  double usd_per_hour = 0;
  std::string json_out, plot_out;
  uint64_t seed = 1;
};

RequestResult one_request(const BenchServeOptions& o, const std::string& prompt) {
  RequestResult r;
  httplib::Client c(o.host, o.port);
  c.set_read_timeout(600, 0);
  if (!o.api_key.empty()) c.set_bearer_token_auth(o.api_key.c_str());
  json body = {{"model", o.model}, {"prompt", prompt}, {"max_tokens", o.output_tokens}, {"temperature", 0}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!o.api_key.empty()) req.set_header("Authorization", "Bearer " + o.api_key);
  const auto t0 = clock_type::now();
  auto last = t0;
  std::string buf;
  bool first = true;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    size_t pos;
    while ((pos = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, pos);
      buf.erase(0, pos + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      ev = ev.substr(6);
      if (ev == "[DONE]") continue;
      json j = json::parse(ev, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("usage") && j["usage"].is_object()) {
        r.output_tokens = j["usage"].value("completion_tokens", 0);
        r.prompt_tokens = j["usage"].value("prompt_tokens", 0);
      }
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const std::string text = j["choices"][0].value("text", "");
      if (text.empty()) continue;
      const auto now = clock_type::now();
      if (first) r.ttft = std::chrono::duration<double>(now - t0).count();
      else r.itl.push_back(std::chrono::duration<double>(now - last).count());
      first = false;
      last = now;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = c.send(req, res, err);
  r.e2e = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (!sent) r.error = httplib::to_string(err);
  else if (res.status != 200) r.error = "HTTP " + std::to_string(res.status);
  else r.ok = !first;
  return r;
}

// The server's prefix-cache counters (tokens): gemforge's, or vLLM's. ok is false when
// the server exposes neither (llama-server, or no /metrics at all).
struct PrefixCounters {
  bool ok = false;
  double hit = 0, query = 0;
};
PrefixCounters prefix_counters(const BenchServeOptions& o) {
  httplib::Client c(o.host, o.port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(10, 0);
  httplib::Headers h;
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  auto r = c.Get("/metrics", h);
  if (!r || r->status != 200) return {};
  std::optional<double> hit, query;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.find_last_of(' ');
    if (sp == std::string::npos) continue;
    std::string name = line.substr(0, sp);
    name = name.substr(0, name.find('{'));  // vLLM labels its series with the model name
    const double v = std::atof(line.c_str() + sp + 1);
    if (name == "gemforge_prefix_cache_hit_tokens_total" || name == "vllm:prefix_cache_hits_total") hit = hit.value_or(0) + v;
    if (name == "gemforge_prefix_cache_query_tokens_total" || name == "vllm:prefix_cache_queries_total") query = query.value_or(0) + v;
  }
  if (!hit || !query) return {};
  return PrefixCounters{true, *hit, *query};
}

// The prompts of rate number `round`: fresh random words drawn from (seed, round), or the
// next num_prompts lines of the file in a seeded order (they repeat only when the file is short).
std::vector<std::string> prompts_for(const BenchServeOptions& o, const std::vector<std::string>& lines, size_t round) {
  std::vector<std::string> prompts;
  std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ull + round + 1);
  if (!lines.empty()) {
    for (int i = 0; i < o.num_prompts; ++i) prompts.push_back(lines[(round * static_cast<size_t>(o.num_prompts) + static_cast<size_t>(i)) % lines.size()]);
    return prompts;
  }
  static const char* words[] = {"the", "model", "river", "light", "green", "seven", "under", "music", "paper", "quick", "stone", "north",
                                "window", "garden", "history", "number", "silver", "winter", "travel", "science"};
  for (int i = 0; i < o.num_prompts; ++i) {
    std::string p;
    for (int w = 0; w < o.input_words; ++w) p += std::string(w ? " " : "") + words[rng() % 20];
    prompts.push_back(p);
  }
  return prompts;
}

int run_bench_serve(const BenchServeOptions& o) {
  std::vector<std::string> lines;
  std::mt19937_64 rng(o.seed);  // arrivals
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) return fail(Err("cannot read " + o.prompt_file));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) lines.push_back(line);
    if (lines.empty()) return fail(Err(o.prompt_file + " has no prompts"));
    std::mt19937_64 order(o.seed);
    std::shuffle(lines.begin(), lines.end(), order);
  }
  std::vector<double> rates;
  for (size_t i = 0; i < o.rates.size();) {
    size_t j = o.rates.find(',', i);
    if (j == std::string::npos) j = o.rates.size();
    const std::string r = o.rates.substr(i, j - i);
    rates.push_back(r == "inf" ? INFINITY : std::atof(r.c_str()));
    if (!(rates.back() > 0)) return fail(Err("bad request rate \"" + r + "\""));
    i = j + 1;
  }
  if (!lines.empty() && lines.size() < rates.size() * static_cast<size_t>(o.num_prompts))
    std::fprintf(stderr, "note: %s has %zu prompts for %zu rates x %d requests: later rates reuse prompts (see the prefix hit column)\n",
                 o.prompt_file.c_str(), lines.size(), rates.size(), o.num_prompts);
  json all = json::array();
  std::printf("| rate req/s | done | req/s | out tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | ITL p50 ms | E2E p50 ms | prefix hit |%s\n",
              o.usd_per_hour > 0 ? " $/M out tok |" : "");
  std::printf("|---|---|---|---|---|---|---|---|---|---|%s\n", o.usd_per_hour > 0 ? "---|" : "");
  for (size_t ri = 0; ri < rates.size(); ++ri) {
    const double rate = rates[ri];
    const std::vector<std::string> prompts = prompts_for(o, lines, ri);
    const PrefixCounters before = prefix_counters(o);
    std::vector<RequestResult> results(static_cast<size_t>(o.num_prompts));
    std::vector<std::thread> threads;
    std::mutex slots_mu;
    std::condition_variable slots_cv;
    int in_flight = 0;
    std::exponential_distribution<double> gap(std::isinf(rate) ? 1.0 : rate);
    const auto t0 = clock_type::now();
    for (int i = 0; i < o.num_prompts; ++i) {
      if (o.max_concurrency > 0) {
        std::unique_lock<std::mutex> lk(slots_mu);
        slots_cv.wait(lk, [&] { return in_flight < o.max_concurrency; });
        ++in_flight;
      }
      threads.emplace_back([&, i] {
        results[static_cast<size_t>(i)] = one_request(o, prompts[static_cast<size_t>(i) % prompts.size()]);
        if (o.max_concurrency > 0) {
          std::lock_guard<std::mutex> lk(slots_mu);
          --in_flight;
          slots_cv.notify_one();
        }
      });
      if (!std::isinf(rate)) std::this_thread::sleep_for(std::chrono::duration<double>(gap(rng)));
    }
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    json s = summarise(results, wall);
    s["request_rate"] = std::isinf(rate) ? json("inf") : json(rate);
    const PrefixCounters after = before.ok ? prefix_counters(o) : PrefixCounters{};
    char hit[32] = "n/a";
    s["prefix_cache_hit_rate"] = nullptr;
    if (after.ok && after.query > before.query) {
      const double h = (after.hit - before.hit) / (after.query - before.query);
      s["prefix_cache_hit_rate"] = h;
      s["prefix_cache_hit_tokens"] = after.hit - before.hit;
      s["prefix_cache_query_tokens"] = after.query - before.query;
      std::snprintf(hit, sizeof hit, "%.1f%%", 100.0 * h);
    }
    for (const auto& r : results)
      if (!r.ok && !r.error.empty()) { s["first_error"] = r.error; break; }
    char cost[64] = "";
    if (o.usd_per_hour > 0) {
      const double per_m = s["output_throughput"].get<double>() > 0 ? o.usd_per_hour / 3600.0 / s["output_throughput"].get<double>() * 1e6 : 0;
      s["usd_per_million_output_tokens"] = per_m;
      std::snprintf(cost, sizeof cost, " %.3f |", per_m);
    }
    std::printf("| %s | %lld/%d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |%s\n", std::isinf(rate) ? "inf" : std::to_string(rate).substr(0, 5).c_str(),
                static_cast<long long>(s["completed"].get<int64_t>()), o.num_prompts, s["request_throughput"].get<double>(),
                s["output_throughput"].get<double>(), s["ttft"]["p50_ms"].get<double>(), s["ttft"]["p99_ms"].get<double>(),
                s["tpot"]["p50_ms"].get<double>(), s["itl"]["p50_ms"].get<double>(), s["e2e"]["p50_ms"].get<double>(), hit, cost);
    std::fflush(stdout);
    all.push_back(s);
  }
  // Saturation: the rate after which output throughput stops growing by 5 %.
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i]["output_throughput"].get<double>() < 1.05 * all[i - 1]["output_throughput"].get<double>()) {
      std::printf("saturation: about %s req/s (%.1f output tok/s)\n", all[i - 1]["request_rate"].dump().c_str(),
                  all[i - 1]["output_throughput"].get<double>());
      break;
    }
  const std::string server = o.host + ":" + std::to_string(o.port);
  return write_bench_result(json{{"server", server}, {"results", all}}, server, o.json_out, o.plot_out);
}

CommandRegistration reg(61, [](CLI::App& root) {
  auto o = std::make_shared<BenchServeOptions>();
  // `gemforge bench serve ...` (the form); `bench-serve` is kept as an alias.
  CLI::App* bench = nullptr;
  for (CLI::App* sub : root.get_subcommands([](CLI::App* a) { return a->get_name() == "bench"; })) bench = sub;
  CLI::App* c = bench ? bench->add_subcommand("serve", "Drive a running OpenAI-compatible server at a sweep of request rates (TTFT/TPOT/ITL)")
                      : root.add_subcommand("bench-serve", "Drive a running OpenAI-compatible server at a sweep of request rates");
  c->add_option("--host", o->host, "Server host")->capture_default_str();
  c->add_option("--port", o->port, "Server port")->capture_default_str();
  c->add_option("--api-key", o->api_key, "Bearer token");
  c->add_option("--model", o->model, "Model name sent in requests")->capture_default_str();
  c->add_option("--request-rate", o->rates, "Comma-separated request rates (req/s), 'inf' = all at once")->capture_default_str();
  c->add_option("--num-prompts", o->num_prompts, "Requests per rate")->capture_default_str();
  c->add_option("--input-words", o->input_words, "Words per random prompt")->capture_default_str();
  c->add_option("--output-tokens", o->output_tokens, "max_tokens per request")->capture_default_str();
  c->add_option("--prompt-file", o->prompt_file, "One prompt per line instead of random prompts (each rate takes the next --num-prompts lines)");
  c->add_option("--max-concurrency", o->max_concurrency, "Most requests in flight (0 = unbounded)")->capture_default_str();
  c->add_option("--usd-per-hour", o->usd_per_hour, "Machine price, to report $ per million output tokens");
  c->add_option("--json", o->json_out, "Write the results as JSON");
  c->add_option("--plot", o->plot_out, "Draw the results as a PNG (needs matplotlib; several runs: bench plot)");
  c->add_option("--seed", o->seed, "Seed of the arrivals and the prompts (fresh prompts for every rate)")->capture_default_str();
  c->callback([o] { set_exit_code(run_bench_serve(*o)); });
});

}  // namespace
}  // namespace gf::cli
