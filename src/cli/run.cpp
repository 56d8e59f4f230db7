// gemforge run: generate a continuation of a prompt through the KV cache,
// streaming text to stdout (or printing ids with --print-ids).
#include <algorithm>
#include <cstdio>
#include <unistd.h>

#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/reply_printer.h"
#include "cli/sampling_options.h"
#include "model/decoder.h"
#include "runtime/generate.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/stream_decoder.h"

namespace gf::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt;
  std::string prompt_ids;
  std::string chat = "auto";
  int n = 256;
  SamplingOptions sampling;
  bool print_ids = false;
  bool stats = false;
  bool think = false;
  int ctx = 0;
};

int run_run(RunOptions o) {
  if (o.prompt.empty() == o.prompt_ids.empty()) return fail(Err("give exactly one of -p TEXT or --prompt-ids IDS"));
  if (o.chat != "auto" && o.chat != "on" && o.chat != "off") return fail(Err("--chat must be auto, on or off"));
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());

  std::optional<Tokenizer> tok;
  std::vector<int32_t> prompt;
  std::vector<int32_t> stop_ids = m->spec.eos_token_ids;
  bool gemma4_chat = false;  // the reply carries Gemma 4 thinking / tool-call markers
  if (!o.prompt.empty() || !o.sampling.stop.empty() || !o.print_ids) {
    if (m->tokenizer_path.empty()) return fail(Err("this model has no tokenizer: use --prompt-ids and --print-ids"));
    auto t = Tokenizer::from_path(m->tokenizer_path);
    if (!t.ok()) return fail(t.status());
    tok = std::move(t).value();
  }
  if (!o.prompt_ids.empty()) {
    auto ids = parse_id_list(o.prompt_ids);
    if (!ids.ok()) return fail(ids.status());
    prompt = *ids;
  } else {
    // Instruction-tuned models get the prompt as a user turn; base models get it raw.
    const bool chat = o.chat == "on" || (o.chat == "auto" && m->has_chat_template);
    if (chat) {
      auto fmt = ChatFormat::for_tokenizer(*tok, m->spec.family >= Family::Gemma3);
      if (!fmt.ok()) return fail(fmt.status());
      gemma4_chat = fmt->style() == ChatStyle::Gemma4;
      if (o.think && !gemma4_chat) return fail(Err("--think needs a Gemma 4 model with a chat template"));
      ChatOptions copt;
      copt.enable_thinking = o.think;
      auto ids = fmt->render_ids({{"user", o.prompt}}, copt);
      if (!ids.ok()) return fail(ids.status());
      prompt = *ids;
      for (int32_t id : fmt->stop_ids()) stop_ids.push_back(id);
    } else {
      if (o.think) return fail(Err("--think needs the prompt sent as a chat turn (a Gemma 4 model with a chat template, --chat on)"));
      prompt = tok->encode(o.prompt, true, false);
    }
  }
  for (int32_t id : prompt)
    if (id < 0 || id >= m->spec.vocab_size) return fail(Err("prompt token id " + std::to_string(id) + " is outside the vocabulary"));

  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  const int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(m->spec.max_position_embeddings, 8192);
  if (static_cast<int64_t>(prompt.size()) >= ctx)
    return fail(Err("the prompt has " + std::to_string(prompt.size()) + " tokens and does not fit the context of " +
                    std::to_string(ctx) + " tokens (raise --ctx-size, up to " + std::to_string(m->spec.max_position_embeddings) + ")"));
  auto cache = (*dec)->new_cache(std::min<int64_t>(ctx, static_cast<int64_t>(prompt.size()) + o.n + 1));
  if (!cache.ok()) return fail(cache.status());

  GenerateOptions g;
  g.max_tokens = o.n;
  g.sampling = resolved(o.sampling);
  g.stop_ids = stop_ids;
  std::vector<int32_t> history, generated;
  std::optional<StreamDecoder> sd;
  if (tok && !o.print_ids) sd.emplace(*tok, o.sampling.stop, /*skip_special=*/!gemma4_chat);
  ReplyPrinter printer(gemma4_chat, isatty(STDOUT_FILENO) != 0);
  auto st = generate(**dec, **cache, prompt, history, g, [&](int32_t id) {
    generated.push_back(id);
    if (sd) {
      std::fputs(printer.push(sd->push(id)).c_str(), stdout);
      std::fflush(stdout);
      return !sd->stopped();
    }
    return true;
  });
  if (!st.ok()) return fail(st.status());
  if (o.print_ids) {
    for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? " " : "", generated[i]);
    std::printf("\n");
  } else if (sd) {
    std::fputs(printer.push(sd->finish()).c_str(), stdout);
    std::fputs(printer.finish().c_str(), stdout);
    std::printf("\n");
  }
  std::fflush(stdout);
  if (o.stats)
    std::fprintf(stderr, "prompt: %lld tokens in %.2f s (%.1f tok/s); generated: %lld tokens in %.2f s (%.1f tok/s); stop: %s\n",
                 static_cast<long long>(st->prompt_tokens), st->prefill_seconds, st->prompt_tokens / std::max(1e-9, st->prefill_seconds),
                 static_cast<long long>(st->generated), st->decode_seconds, st->generated / std::max(1e-9, st->decode_seconds),
                 stop_reason_name(st->reason));
  return 0;
}

CommandRegistration reg(10, [](CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* c = root.add_subcommand("run", "Generate text from a prompt (streamed), or continue token ids");
  add_model_options(c, o->model);
  add_lora_option(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("-p,--prompt", o->prompt, "Prompt text");
  c->add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids");
  c->add_option("--chat", o->chat, "Send the prompt as a user turn: auto (when the model has a chat template), on, off")
      ->capture_default_str();
  c->add_option("-n,--max-tokens", o->n, "Maximum new tokens")->capture_default_str();
  add_sampling_options(c, o->sampling);
  c->add_option("-c,--ctx-size", o->ctx, "Context size in tokens (default: min(model max, 8192))");
  c->add_flag("--print-ids", o->print_ids, "Print the new token ids space-separated on one line instead of text");
  c->add_flag("--stats", o->stats, "Print prompt and generation speed to stderr");
  c->add_flag("--think", o->think, "Gemma 4: think before answering (thinking shown dimmed, or between [thinking] lines)");
  c->callback([o] { set_exit_code(run_run(*o)); });
});

}  // namespace
}  // namespace gf::cli
