#include "cli/sampling_options.h"

namespace gf::cli {

void add_sampling_options(CLI::App* c, SamplingOptions& o) {
  SamplingParams& p = o.params;
  const char* group = "Sampling";
  c->add_option("--temp,--temperature", p.temperature, "Sampling temperature (0 = greedy)")->capture_default_str()->group(group);
  c->add_option("--top-k", p.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str()->group(group);
  c->add_option("--top-p", p.top_p, "Nucleus sampling threshold (1 = off)")->capture_default_str()->group(group);
  c->add_option("--min-p", p.min_p, "Drop tokens below min-p x the top probability (0 = off)")->capture_default_str()->group(group);
  c->add_option("--repeat-penalty", p.repetition_penalty, "Repetition penalty (1 = off)")->capture_default_str()->group(group);
  c->add_option("--presence-penalty", p.presence_penalty, "Presence penalty (OpenAI style, 0 = off)")->capture_default_str()->group(group);
  c->add_option("--frequency-penalty", p.frequency_penalty, "Frequency penalty (OpenAI style, 0 = off)")->capture_default_str()->group(group);
  c->add_option("--repeat-last-n", p.penalty_last_n, "Tokens the penalties look back over (-1 = all)")->capture_default_str()->group(group);
  c->add_option("--seed", o.seed, "Sampling seed (same seed, same text)")->group(group);
  c->add_option("--stop", o.stop, "Stop when this string appears (repeatable)")->group(group);
}

SamplingParams resolved(const SamplingOptions& o, uint64_t fallback) {
  SamplingParams p = o.params;
  p.seed = o.seed.value_or(fallback);
  return p;
}

}  // namespace gf::cli
