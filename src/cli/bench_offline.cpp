// gemforge bench offline: the serving engine without HTTP. A fixed batch of
// random prompts of a given length, all submitted at once, greedy, exactly
// --output-tokens each (stop tokens ignored); reports the same summary as
// `bench serve` (output tok/s, TTFT, TPOT). It is the upper bound the server
// is compared with at the same --parallel.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include "cli/bench_plot.h"
#include "cli/bench_report.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "runtime/engine.h"

namespace gf::cli {
namespace {

struct BenchOfflineOptions {
  ModelOptions model;
  int num_prompts = 32;
  int input_tokens = 1000;
  int output_tokens = 512;
  int64_t kv_tokens = 131072;
  int parallel = 64;
  int chunk = 2048;
  double usd_per_hour = 0;
  std::string json_out, plot_out;
  uint64_t seed = 1;
};

// Submits the prompts at once and waits for all of them.
Result<std::vector<RequestResult>> run_batch(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int max_tokens) {
  std::vector<std::shared_ptr<EngineRequest>> reqs;
  for (const auto& p : prompts) {
    auto r = std::make_shared<EngineRequest>();
    r->prompt = p;
    r->max_tokens = max_tokens;
    r->sampling.temperature = 0;
    GF_RETURN_IF_ERROR(engine.submit(r));
    reqs.push_back(r);
  }
  std::vector<RequestResult> out;
  for (auto& r : reqs) {
    std::unique_lock<std::mutex> lk(r->mu);
    r->cv.wait(lk, [&] { return r->done; });
    RequestResult rr;
    rr.ok = r->finish_reason == FinishReason::Length || r->finish_reason == FinishReason::Stop;
    rr.error = r->error;
    rr.ttft = r->first_token_at - r->submitted_at;
    rr.e2e = r->finished_at - r->submitted_at;
    rr.output_tokens = r->completion_tokens;
    rr.prompt_tokens = static_cast<int64_t>(r->prompt.size());
    out.push_back(std::move(rr));
  }
  return out;
}

int run_bench_offline(const BenchOfflineOptions& o) {
  if (o.num_prompts <= 0 || o.input_tokens <= 0 || o.output_tokens <= 0)
    return fail(Err("--num-prompts, --input-tokens and --output-tokens must be positive"));
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  auto engine = Engine::create(**dec, engine_options(o.kv_tokens, o.parallel, o.chunk, static_cast<size_t>(o.num_prompts) + 1));
  if (!engine.ok()) return fail(engine.status());
  std::mt19937_64 rng(o.seed);
  const int64_t V = m->spec.vocab_size;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(o.num_prompts));
  for (auto& p : prompts) {
    p.push_back(m->spec.bos_token_id);
    for (int i = 1; i < o.input_tokens; ++i) p.push_back(static_cast<int32_t>(10 + rng() % static_cast<uint64_t>(V - 10)));
  }
  // Warm-up (graph capture, GEMM plans) on a small batch of the same shape, not timed.
  std::vector<std::vector<int32_t>> warm(prompts.begin(), prompts.begin() + std::min<size_t>(prompts.size(), 4));
  for (auto& p : warm) p.back() ^= 1;  // not a prefix-cache hit for the timed prompts' last block
  if (auto w = run_batch(**engine, warm, 8); !w.ok()) return fail(w.status());
  const auto t0 = std::chrono::steady_clock::now();
  auto rs = run_batch(**engine, prompts, o.output_tokens);
  if (!rs.ok()) return fail(rs.status());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json s = summarise(*rs, wall);
  const double out_tps = s["output_throughput"].get<double>();
  std::printf("| backend | prompts | in/out tokens | parallel | done | out tok/s | total tok/s | TTFT p50 ms | TPOT p50 ms | E2E p50 s |%s\n",
              o.usd_per_hour > 0 ? " $/M out tok |" : "");
  std::printf("|---|---|---|---|---|---:|---:|---:|---:|---:|%s\n", o.usd_per_hour > 0 ? "---:|" : "");
  char cost[48] = "";
  if (o.usd_per_hour > 0 && out_tps > 0) {
    s["usd_per_million_output_tokens"] = o.usd_per_hour / 3600.0 / out_tps * 1e6;
    std::snprintf(cost, sizeof cost, " %.3f |", s["usd_per_million_output_tokens"].get<double>());
  }
  std::printf("| %s | %d | %d/%d | %d | %lld/%d | %.1f | %.1f | %.1f | %.1f | %.2f |%s\n", (*be)->name().c_str(), o.num_prompts,
              o.input_tokens, o.output_tokens, o.parallel, static_cast<long long>(s["completed"].get<int64_t>()), o.num_prompts, out_tps,
              s["total_token_throughput"].get<double>(), s["ttft"]["p50_ms"].get<double>(), s["tpot"]["p50_ms"].get<double>(),
              s["e2e"]["p50_ms"].get<double>() / 1e3, cost);
  for (const auto& r : *rs)
    if (!r.ok) return fail(Err("a request failed: " + (r.error.empty() ? std::string("no tokens") : r.error)));
  s["backend"] = (*be)->name();
  s["tp"] = o.model.tp;
  s["model"] = m->source;
  s["num_prompts"] = o.num_prompts;
  s["input_tokens"] = o.input_tokens;
  s["output_tokens"] = o.output_tokens;
  s["parallel"] = o.parallel;
  return write_bench_result(s, (*be)->name(), o.json_out, o.plot_out);
}

CommandRegistration reg(62, [](CLI::App& root) {
  auto o = std::make_shared<BenchOfflineOptions>();
  CLI::App* bench = nullptr;
  for (CLI::App* sub : root.get_subcommands([](CLI::App* a) { return a->get_name() == "bench"; })) bench = sub;
  if (!bench) return;
  CLI::App* c = bench->add_subcommand("offline", "The serving engine without HTTP: a fixed batch of prompts, output tok/s (upper bound of bench serve)");
  add_model_options(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("--num-prompts", o->num_prompts, "Requests, all submitted at once")->capture_default_str();
  c->add_option("--input-tokens", o->input_tokens, "Prompt tokens per request (random ids after <bos>)")->capture_default_str();
  c->add_option("--output-tokens", o->output_tokens, "Tokens generated per request (greedy, stop tokens ignored)")->capture_default_str();
  c->add_option("--kv-tokens", o->kv_tokens, "KV cache size in tokens (as serve)")->capture_default_str();
  c->add_option("--parallel", o->parallel, "Most sequences per batch step (as serve)")->capture_default_str();
  c->add_option("--chunk", o->chunk, "Prefill tokens per step (as serve)")->capture_default_str();
  c->add_option("--usd-per-hour", o->usd_per_hour, "Machine price, to report $ per million output tokens");
  c->add_option("--json", o->json_out, "Write the summary as JSON");
  c->add_option("--plot", o->plot_out, "Draw the results as a PNG (needs matplotlib; several runs: bench plot)");
  c->add_option("--seed", o->seed, "Seed of the random prompts")->capture_default_str();
  c->callback([o] { set_exit_code(run_bench_offline(*o)); });
});

}  // namespace
}  // namespace gf::cli
