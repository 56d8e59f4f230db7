// gemforge run: generate a continuation of a prompt through the KV cache.
#include <algorithm>
#include <cstdio>

#include "backend/backend.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "model/decoder.h"
#include "runtime/sampler.h"

namespace gf::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt_ids;
  int n = 128;
  SamplingParams sampling;
  bool print_ids = false;
  int ctx = 0;
};

int run_run(RunOptions o) {
  auto ids = parse_id_list(o.prompt_ids);
  if (!ids.ok()) return fail(ids.status());
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = Decoder::create(*m, **be);
  if (!dec.ok()) return fail(dec.status());
  const int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(m->spec.max_position_embeddings, 8192);
  const int64_t need = static_cast<int64_t>(ids->size()) + o.n;
  if (static_cast<int64_t>(ids->size()) >= ctx)
    return fail(Err("prompt of " + std::to_string(ids->size()) + " tokens does not fit the context of " + std::to_string(ctx) + " tokens"));
  auto cache = (*dec)->new_cache(std::min(ctx, need));
  if (!cache.ok()) return fail(cache.status());
  Sampler sampler(o.sampling);
  std::vector<int32_t> history = *ids;
  std::vector<int32_t> generated;
  auto logits = (*dec)->forward(*ids, **cache, false);
  const auto& eos = m->spec.eos_token_ids;
  for (int i = 0; i < o.n; ++i) {
    if (!logits.ok()) return fail(logits.status());
    int32_t next = sampler.sample(logits->data(), m->spec.vocab_size, history);
    generated.push_back(next);
    history.push_back(next);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    if ((*cache)->length() >= (*cache)->capacity()) break;
    if (i + 1 < o.n) logits = (*dec)->forward({next}, **cache, false);
  }
  if (o.print_ids) {
    for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? " " : "", generated[i]);
    std::printf("\n");
  }
  return 0;
}

CommandRegistration reg(10, [](CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* c = root.add_subcommand("run", "Generate a continuation of a prompt");
  add_model_options(c, o->model);
  c->add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids");
  c->add_option("-n,--max-tokens", o->n, "Maximum new tokens")->capture_default_str();
  c->add_option("--temp,--temperature", o->sampling.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  c->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  c->add_option("--top-p", o->sampling.top_p, "Nucleus sampling threshold (1 = off)")->capture_default_str();
  c->add_option("--min-p", o->sampling.min_p, "Drop tokens below min-p x the top probability (0 = off)")->capture_default_str();
  c->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  c->add_option("--presence-penalty", o->sampling.presence_penalty, "Presence penalty")->capture_default_str();
  c->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Frequency penalty")->capture_default_str();
  c->add_option("--seed", o->sampling.seed, "Sampling seed (same seed, same text)")->capture_default_str();
  c->add_option("-c,--ctx-size", o->ctx, "Context size in tokens (default: min(model max, 8192))");
  c->add_flag("--print-ids", o->print_ids, "Print the new token ids space-separated on one line");
  c->callback([o] { set_exit_code(run_run(*o)); });
});

}  // namespace
}  // namespace gf::cli
