// gemforge bench: prompt processing (pp) and generation (tg) speed, printed
// like llama-bench: pp = one prefill of P tokens, tg = N single-token decode
// steps after it; with --batch, decode throughput of B sequences stepped
// together through forward_batch_sample (greedy ids out, fed back). Reports the mean and spread over --reps
// runs. On --backend cuda it also measures the device (copy bandwidth, bf16
// GEMM peak) and reports prefill TFLOP/s and the fraction of the memory
// bandwidth limit that batch-1 decode reaches.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "backend/cpu/isa.h"
#include "cli/bench_plot.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "core/thread_pool.h"
#include "model/decoder.h"
#ifdef GEMFORGE_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace gf::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  int prompt = 512;
  int gen = 128;
  int reps = 3;
  std::string batches;
  int batch_prompt = 32;
  int batch_gen = 64;
  bool no_graphs = false;
  std::string json_out, plot_out;
};

struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0;
  return s;
}

// FLOPs of a forward over tokens at positions [start, start + n) of one
// sequence: 2 x (matmul weights) per token plus causal (windowed) attention,
// and the LM head for `logit_rows` rows.
double forward_flops(const ModelSpec& s, int64_t start, int64_t n, int64_t logit_rows) {
  double f = 0;
  for (const auto& l : s.layers) {
    const double qd = double(l.num_heads) * l.head_dim, kvd = double(l.num_kv_heads) * l.head_dim;
    const double w = double(s.hidden_size) * (qd + 2 * kvd) + qd * s.hidden_size + 3.0 * s.hidden_size * l.intermediate_size;
    f += 2 * w * double(n);
    double keys = 0;
    for (int64_t p = start; p < start + n; ++p) keys += double(l.sliding_window > 0 ? std::min<int64_t>(p + 1, l.sliding_window) : p + 1);
    f += 4.0 * l.num_heads * l.head_dim * keys;
  }
  return f + 2.0 * s.hidden_size * double(s.vocab_size) * double(logit_rows);
}

// Bytes a decode step of one token at position p must read: every matmul
// weight (bf16 on the GPU), the LM head, and the K/V rows attended.
double decode_bytes(const ModelSpec& s, int64_t p, double weight_elem_bytes, double kv_elem_bytes) {
  double b = 0;
  for (const auto& l : s.layers) {
    const double qd = double(l.num_heads) * l.head_dim, kvd = double(l.num_kv_heads) * l.head_dim;
    b += weight_elem_bytes * (double(s.hidden_size) * (qd + 2 * kvd) + qd * s.hidden_size + 3.0 * s.hidden_size * l.intermediate_size);
    const double keys = double(l.sliding_window > 0 ? std::min<int64_t>(p + 1, l.sliding_window) : p + 1);
    b += kv_elem_bytes * 2 * kvd * keys;
  }
  return b + weight_elem_bytes * double(s.hidden_size) * s.vocab_size;
}

Result<std::vector<int>> parse_batches(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end || v <= 0 || v > 4096) return Err("bad batch size \"" + item + "\" in --batch " + s);
    out.push_back(static_cast<int>(v));
  }
  return out;
}

int run_bench(const BenchOptions& o) {
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
  auto batches = parse_batches(o.batches);
  if (!batches.ok()) return fail(batches.status());
  if (!o.plot_out.empty() && batches->empty()) return fail(Err("--plot draws the --batch results: add --batch, e.g. --batch 1,8,32"));
  if (Status st = check_tp_options(o.model); !st.ok()) return fail(st);
  const bool cuda = o.model.backend == "cuda";
  nlohmann::json js;
  double copy_gbps = 0, gemm_tflops = 0;
  std::string device = "cpu";
#ifdef GEMFORGE_HAVE_CUDA
  if (cuda) {
    auto info = cuda_measure_device(0, o.prompt > 0);
    if (!info.ok()) return fail(info.status());
    copy_gbps = info->copy_gbps;
    gemm_tflops = info->gemm_tflops;
    device = info->name;
    std::printf("device: %s, %.1f GiB; device copy %.0f GB/s (read + write); bf16 GEMM 8192^3 %.0f TFLOP/s\n", info->name.c_str(),
                info->mem_gib, copy_gbps, gemm_tflops);
    js["device"] = {{"name", info->name}, {"copy_gbps", copy_gbps}, {"gemm_tflops", gemm_tflops}};
  }
#endif
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  std::unique_ptr<Backend> be;
  if (cuda) {
#ifdef GEMFORGE_HAVE_CUDA
    auto b = try_make_cuda_backend(0);
    if (!b.ok()) return fail(b.status());
    be = std::move(*b);
    if (o.no_graphs) cuda_set_graphs(*be, false);
#else
    return fail(Err("this build has no CUDA backend (nvcc was not found when it was configured)"));
#endif
  } else {
    auto b = make_backend_from_options(o.model);
    if (!b.ok()) return fail(b.status());
    be = std::move(*b);
  }
  auto t_up = clock::now();
  auto dec = create_decoder(*m, *be, o.model);
  if (!dec.ok()) return fail(dec.status());
  std::fprintf(stderr, "weights on the %s backend in %.1f s\n", be->name().c_str(), secs(t_up));
  if (be->name() == "cpu") std::fprintf(stderr, "CPU kernels: %s (GEMFORGE_CPU_ISA)\n", cpu::isa_name(cpu::active_isa()));
  const ModelSpec& spec = m->spec;
  (*dec)->set_max_chunk(std::max(512, o.prompt));
  auto cache = (*dec)->new_cache(o.prompt + o.gen + 2);
  if (!cache.ok()) return fail(cache.status());
  std::mt19937 rng(1);
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt));
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(spec.vocab_size));

  // Decode steps end with the backend's sampling op (greedy): ids out, as run and serve do.
  const RowSampling greedy;
  std::vector<double> pp, tg, tg_gpu_ms;
  for (int r = 0; r < o.reps + 1; ++r) {  // the first run warms caches and is dropped
    (*cache)->reset();
    if (o.prompt > 0) {
      auto t0 = clock::now();
      auto l = (*dec)->forward(prompt, **cache, false);
      if (!l.ok()) return fail(l.status());
      if (r) pp.push_back(o.prompt / secs(t0));
    }
    if (o.gen > 0) {
      (*cache)->reset();
      auto l = (*dec)->forward_sample({spec.bos_token_id}, **cache, greedy);
      double gpu = 0;
      auto t0 = clock::now();
      for (int i = 0; i < o.gen && l.ok(); ++i) {
        l = (*dec)->forward_sample({static_cast<int32_t>(i % 1000 + 10)}, **cache, greedy);
#ifdef GEMFORGE_HAVE_CUDA
        if (cuda) gpu += cuda_step_stats(*be).last_step_ms;
#endif
      }
      if (!l.ok()) return fail(l.status());
      if (r) {
        tg.push_back(o.gen / secs(t0));
        tg_gpu_ms.push_back(gpu / o.gen);
      }
    }
  }

  // Batched decode: B sequences with short prompts, stepped together.
  struct BatchRow {
    int b;
    std::vector<double> tps;
    double step_ms = 0, gpu_ms = 0;
  };
  std::vector<BatchRow> brows;
  for (int B : *batches) {
    const int bs = 16;
    const int64_t per_seq = (o.batch_prompt + o.batch_gen + 1 + bs - 1) / bs + 1;
    auto pc = (*dec)->new_paged_cache(per_seq * B, bs);
    if (!pc.ok()) return fail(pc.status());
    BatchRow row{B, {}, 0, 0};
    for (int r = 0; r < std::max(1, o.reps - 1) + 1; ++r) {
      std::vector<SeqState> seqs(static_cast<size_t>(B));
      std::vector<SeqStep> steps(static_cast<size_t>(B));
      for (int s = 0; s < B; ++s) {
        steps[static_cast<size_t>(s)].seq = &seqs[static_cast<size_t>(s)];
        steps[static_cast<size_t>(s)].sampling = &greedy;
        for (int i = 0; i < o.batch_prompt; ++i)
          steps[static_cast<size_t>(s)].ids.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(spec.vocab_size)));
      }
      auto out = (*dec)->forward_batch_sample(**pc, steps);
      if (!out.ok()) return fail(out.status());
      double gpu = 0;
      auto t0 = clock::now();
      for (int i = 0; i < o.batch_gen; ++i) {
        for (int s = 0; s < B; ++s) steps[static_cast<size_t>(s)].ids = {(*out)[static_cast<size_t>(s)].id};
        out = (*dec)->forward_batch_sample(**pc, steps);
        if (!out.ok()) return fail(out.status());
#ifdef GEMFORGE_HAVE_CUDA
        if (cuda) gpu += cuda_step_stats(*be).last_step_ms;
#endif
      }
      const double dt = secs(t0);
      if (r) {
        row.tps.push_back(double(B) * o.batch_gen / dt);
        row.step_ms = 1e3 * dt / o.batch_gen;
        row.gpu_ms = gpu / o.batch_gen;
      }
      for (auto& s : seqs) (*pc)->release(s);
    }
    brows.push_back(row);
  }

  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  const std::string mname = m->source.substr(m->source.find_last_of('/') + 1).substr(0, 24);
  char size[32];
  std::snprintf(size, sizeof size, "%.2f GiB", m->weight_bytes() / 1073741824.0);
  std::printf("\n| %-24s | %9s | %7s | %-10s | %18s | %9s | %-28s |\n", "model", "size", "backend", "test", "t/s", "ms/step", "note");
  std::printf("| %-24s | %9s | %7s | %-10s | %18s | %9s | %-28s |\n", "---", "---:", "---", "---", "---:", "---:", "---");
  js["model"] = m->source;
  js["size_bytes"] = m->weight_bytes();
  js["backend"] = be->name();
  js["tp"] = o.model.tp;
  js["threads"] = num_threads();
  const std::string backend = be->name() + (o.model.tp > 1 ? " tp" + std::to_string(o.model.tp) : "");
  if (be->name() == "cpu") js["cpu_isa"] = cpu::isa_name(cpu::active_isa());
  js["peak_rss_mib"] = rss_mib;
  auto line = [&](const std::string& test, const Stat& s, double ms, const std::string& note) {
    std::printf("| %-24s | %9s | %7s | %-10s | %10.2f ± %5.2f | %9.3f | %-28s |\n", mname.c_str(), size, backend.c_str(),
                test.c_str(), s.mean, s.sd, ms, note.c_str());
  };
  if (!pp.empty()) {
    Stat s = stats(pp);
    const double tflops = forward_flops(spec, 0, o.prompt, 1) * s.mean / o.prompt / 1e12;
    char note[64] = "";
    if (gemm_tflops > 0) std::snprintf(note, sizeof note, "%.0f TFLOP/s = %.0f%% of GEMM", tflops, 100 * tflops / gemm_tflops);
    else std::snprintf(note, sizeof note, "%.2f TFLOP/s", tflops);
    line("pp" + std::to_string(o.prompt), s, 1e3 * o.prompt / s.mean, note);
    js["pp" + std::to_string(o.prompt)] = {{"tokens_per_s", s.mean}, {"sd", s.sd}, {"runs", pp}, {"tflops", tflops},
                                           {"gemm_peak_fraction", gemm_tflops > 0 ? tflops / gemm_tflops : 0}};
  }
  if (!tg.empty()) {
    Stat s = stats(tg);
    // Average bytes per step over positions 1..gen. On the GPU weights are
    // bf16, or GGUF blocks kept as they are (fewer bytes per element); KV bf16.
    const double elem_bytes = std::min(2.0, double(m->weight_bytes()) / decode_bytes(spec, 0, 1.0, 0.0));
    double bytes = 0;
    for (int i = 0; i < o.gen; ++i) bytes += decode_bytes(spec, 1 + i, elem_bytes, 2.0);
    bytes /= o.gen;
    const double ms = 1e3 / s.mean;
    const double gpu_ms = stats(tg_gpu_ms).mean;
    char note[96] = "";
    if (copy_gbps > 0)
      std::snprintf(note, sizeof note, "%.0f%% of BW limit (GPU %.3f ms)", 100 * bytes / (ms * 1e-3) / (copy_gbps * 1e9), gpu_ms);
    line("tg" + std::to_string(o.gen), s, ms, note);
    js["tg" + std::to_string(o.gen)] = {{"tokens_per_s", s.mean}, {"sd", s.sd}, {"runs", tg}, {"ms_per_step", ms},
                                        {"gpu_ms_per_step", gpu_ms}, {"bytes_per_step", bytes},
                                        {"bandwidth_fraction", copy_gbps > 0 ? bytes / (ms * 1e-3) / (copy_gbps * 1e9) : 0},
                                        {"bandwidth_limit_tokens_per_s", copy_gbps > 0 ? copy_gbps * 1e9 / bytes : 0}};
  }
  for (const auto& r : brows) {
    Stat s = stats(r.tps);
    char note[96] = "";
    if (cuda) std::snprintf(note, sizeof note, "GPU %.3f ms/step", r.gpu_ms);
    const std::string test = "tg" + std::to_string(o.batch_gen) + " b" + std::to_string(r.b);
    line(test, s, r.step_ms, note);
    js["batch"][std::to_string(r.b)] = {{"tokens_per_s", s.mean}, {"sd", s.sd}, {"ms_per_step", r.step_ms}, {"gpu_ms_per_step", r.gpu_ms},
                                       {"prompt", o.batch_prompt}, {"gen", o.batch_gen}};
  }
  std::printf("peak RSS: %.1f MiB\n", rss_mib);
  return write_bench_result(js, device, o.json_out, o.plot_out);
}

CommandRegistration reg(60, [](CLI::App& root) {
  auto o = std::make_shared<BenchOptions>();
  auto* c = root.add_subcommand("bench", "Prompt-processing and generation speed (like llama-bench)");
  add_model_options(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("-p,--prompt", o->prompt, "Prompt tokens for the pp test (0 = skip)")->capture_default_str();
  c->add_option("-n,--gen", o->gen, "Generated tokens for the tg test (0 = skip)")->capture_default_str();
  c->add_option("-r,--reps", o->reps, "Repetitions (after one warm-up)")->capture_default_str();
  c->add_option("-b,--batch", o->batches, "Batched decode: comma-separated batch sizes, e.g. 1,8,32,64,128");
  c->add_option("--batch-prompt", o->batch_prompt, "Prompt tokens per sequence before batched decode")->capture_default_str();
  c->add_option("--batch-gen", o->batch_gen, "Decode steps per batched run")->capture_default_str();
  c->add_flag("--no-graphs", o->no_graphs, "CUDA: run decode steps without CUDA graphs");
  c->add_option("--json", o->json_out, "Also write the results as JSON");
  c->add_option("--plot", o->plot_out, "With --batch: draw tokens/s against batch size as a PNG (needs matplotlib)");
  // `bench serve` (src/cli/bench_serve.cpp) is a subcommand of this one; then only it runs.
  c->callback([o, c] {
    if (c->get_subcommands().empty()) set_exit_code(run_bench(*o));
  });
});

}  // namespace
}  // namespace gf::cli
