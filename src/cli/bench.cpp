// gemforge bench: prompt processing (pp) and generation (tg) speed, printed
// like llama-bench: pp = one prefill of P tokens, tg = N single-token decode
// steps after it. Reports the mean and spread over --reps runs and peak RSS.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/command.h"
#include "cli/model_options.h"
#include "core/thread_pool.h"
#include "model/decoder.h"

namespace gf::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  int prompt = 512;
  int gen = 128;
  int reps = 3;
  std::string json_out;
};

struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0;
  return s;
}

int run_bench(const BenchOptions& o) {
  using clock = std::chrono::steady_clock;
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = Decoder::create(*m, **be);
  if (!dec.ok()) return fail(dec.status());
  auto cache = (*dec)->new_cache(o.prompt + o.gen + 1);
  if (!cache.ok()) return fail(cache.status());
  std::mt19937 rng(1);
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt));
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(m->spec.vocab_size));
  std::vector<double> pp, tg;
  for (int r = 0; r < o.reps + 1; ++r) {  // the first run warms caches and is dropped
    (*cache)->reset();
    if (o.prompt > 0) {
      auto t0 = clock::now();
      auto l = (*dec)->forward(prompt, **cache, false);
      if (!l.ok()) return fail(l.status());
      if (r) pp.push_back(o.prompt / std::chrono::duration<double>(clock::now() - t0).count());
    }
    if (o.gen > 0) {
      (*cache)->reset();
      auto l = (*dec)->forward({m->spec.bos_token_id}, **cache, false);
      auto t0 = clock::now();
      for (int i = 0; i < o.gen && l.ok(); ++i) l = (*dec)->forward({static_cast<int32_t>(i % 1000 + 10)}, **cache, false);
      if (!l.ok()) return fail(l.status());
      if (r) tg.push_back(o.gen / std::chrono::duration<double>(clock::now() - t0).count());
    }
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  std::printf("| %-28s | %9s | %7s | %7s | %6s | %18s |\n", "model", "size", "backend", "threads", "test", "t/s");
  std::printf("| %-28s | %9s | %7s | %7s | %6s | %18s |\n", "---", "---", "---", "---", "---", "---");
  nlohmann::json js = {{"model", m->source}, {"size_bytes", m->weight_bytes()}, {"backend", (*be)->name()},
                       {"threads", num_threads()}, {"peak_rss_mib", rss_mib}};
  auto row = [&](const std::string& test, const std::vector<double>& v) {
    Stat s = stats(v);
    char size[32];
    std::snprintf(size, sizeof size, "%.1f MiB", m->weight_bytes() / 1048576.0);
    std::printf("| %-28s | %9s | %7s | %7d | %6s | %10.2f ± %5.2f |\n", m->source.substr(m->source.find_last_of('/') + 1).substr(0, 28).c_str(),
                size, (*be)->name().c_str(), num_threads(), test.c_str(), s.mean, s.sd);
    js[test] = {{"tokens_per_s", s.mean}, {"sd", s.sd}, {"runs", v}};
  };
  if (!pp.empty()) row("pp" + std::to_string(o.prompt), pp);
  if (!tg.empty()) row("tg" + std::to_string(o.gen), tg);
  std::printf("peak RSS: %.1f MiB\n", rss_mib);
  if (!o.json_out.empty()) {
    std::ofstream(o.json_out) << js.dump(2) << "\n";
  }
  return 0;
}

CommandRegistration reg(60, [](CLI::App& root) {
  auto o = std::make_shared<BenchOptions>();
  auto* c = root.add_subcommand("bench", "Prompt-processing and generation speed (like llama-bench)");
  add_model_options(c, o->model);
  c->add_option("-p,--prompt", o->prompt, "Prompt tokens for the pp test (0 = skip)")->capture_default_str();
  c->add_option("-n,--gen", o->gen, "Generated tokens for the tg test (0 = skip)")->capture_default_str();
  c->add_option("-r,--reps", o->reps, "Repetitions (after one warm-up)")->capture_default_str();
  c->add_option("--json", o->json_out, "Also write the results as JSON");
  c->callback([o] { set_exit_code(run_bench(*o)); });
});

}  // namespace
}  // namespace gf::cli
