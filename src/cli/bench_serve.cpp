// gemforge bench serve: drives a running OpenAI-compatible server (ours,
// llama-server, vLLM...) with Poisson arrivals at one or more request rates
// and reports TTFT, TPOT, ITL and end-to-end latency percentiles, request and
// token throughput, and cost per million output tokens, as vLLM's serving
// benchmark does. Prompts are random words of a given length, or lines of a file.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

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
  std::string json_out;
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

int run_bench_serve(const BenchServeOptions& o) {
  std::vector<std::string> prompts;
  std::mt19937_64 rng(o.seed);
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) return fail(Err("cannot read " + o.prompt_file));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) prompts.push_back(line);
    if (prompts.empty()) return fail(Err(o.prompt_file + " has no prompts"));
  } else {
    static const char* words[] = {"the", "model", "river", "light", "green", "seven", "under", "music", "paper", "quick", "stone", "north",
                                  "window", "garden", "history", "number", "silver", "winter", "travel", "science"};
    for (int i = 0; i < o.num_prompts; ++i) {
      std::string p;
      for (int w = 0; w < o.input_words; ++w) p += std::string(w ? " " : "") + words[rng() % 20];
      prompts.push_back(p);
    }
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
  json all = json::array();
  std::printf("| rate req/s | done | req/s | out tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | ITL p50 ms | E2E p50 ms |%s\n",
              o.usd_per_hour > 0 ? " $/M out tok |" : "");
  std::printf("|---|---|---|---|---|---|---|---|---|%s\n", o.usd_per_hour > 0 ? "---|" : "");
  for (double rate : rates) {
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
    for (const auto& r : results)
      if (!r.ok && !r.error.empty()) { s["first_error"] = r.error; break; }
    char cost[64] = "";
    if (o.usd_per_hour > 0) {
      const double per_m = s["output_throughput"].get<double>() > 0 ? o.usd_per_hour / 3600.0 / s["output_throughput"].get<double>() * 1e6 : 0;
      s["usd_per_million_output_tokens"] = per_m;
      std::snprintf(cost, sizeof cost, " %.3f |", per_m);
    }
    std::printf("| %s | %lld/%d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |%s\n", std::isinf(rate) ? "inf" : std::to_string(rate).substr(0, 5).c_str(),
                static_cast<long long>(s["completed"].get<int64_t>()), o.num_prompts, s["request_throughput"].get<double>(),
                s["output_throughput"].get<double>(), s["ttft"]["p50_ms"].get<double>(), s["ttft"]["p99_ms"].get<double>(),
                s["tpot"]["p50_ms"].get<double>(), s["itl"]["p50_ms"].get<double>(), s["e2e"]["p50_ms"].get<double>(), cost);
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
  if (!o.json_out.empty()) std::ofstream(o.json_out) << json{{"server", o.host + ":" + std::to_string(o.port)}, {"results", all}}.dump(2) << "\n";
  return 0;
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
  c->add_option("--prompt-file", o->prompt_file, "One prompt per line instead of random prompts");
  c->add_option("--max-concurrency", o->max_concurrency, "Most requests in flight (0 = unbounded)")->capture_default_str();
  c->add_option("--usd-per-hour", o->usd_per_hour, "Machine price, to report $ per million output tokens");
  c->add_option("--json", o->json_out, "Write the results as JSON");
  c->add_option("--seed", o->seed, "Seed of the arrivals and random prompts")->capture_default_str();
  c->callback([o] { set_exit_code(run_bench_serve(*o)); });
});

}  // namespace
}  // namespace gf::cli
