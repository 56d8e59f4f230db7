// gemforge chat: interactive multi-turn chat. The conversation stays in the
// KV cache across turns (only the new user turn is prefilled); /reset clears
// it, /system sets a system prompt (Gemma 3+), Ctrl-C interrupts a reply.
#include <csignal>
#include <cstdio>
#include <iostream>
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

std::atomic<bool> g_interrupt{false};
extern "C" void on_sigint(int) { g_interrupt.store(true); }

struct ChatCliOptions {
  ModelOptions model;
  SamplingOptions sampling;
  int n = 1024;
  int ctx = 0;
  std::string system;
  std::string prompt;  // one-shot: answer this and exit
  bool think = false;  // Gemma 4: let the model think first
};

int run_chat(ChatCliOptions o) {
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  if (m->tokenizer_path.empty()) return fail(Err("this model has no tokenizer, so it cannot chat"));
  auto tok = Tokenizer::from_path(m->tokenizer_path);
  if (!tok.ok()) return fail(tok.status());
  const bool allow_system = m->spec.family >= Family::Gemma3;
  auto fmt = ChatFormat::for_tokenizer(*tok, allow_system);
  if (!fmt.ok()) return fail(fmt.status());
  if (!o.system.empty() && !allow_system) return fail(Err("Gemma 1 and 2 have no system turn"));
  const bool gemma4 = fmt->style() == ChatStyle::Gemma4;
  if (o.think && !gemma4) return fail(Err("--think needs a Gemma 4 model (earlier Gemmas have no thinking mode)"));
  gf::ChatOptions render_opt;
  render_opt.enable_thinking = o.think;
  if (!m->has_chat_template)
    std::fprintf(stderr, "note: %s ships no chat template; it may be a base (pretrained) model that does not follow turns well\n",
                 m->source.c_str());
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  const int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(m->spec.max_position_embeddings, 8192);
  auto cache = (*dec)->new_cache(ctx);
  if (!cache.ok()) return fail(cache.status());

  std::signal(SIGINT, on_sigint);
  std::vector<ChatMessage> convo;
  std::string system = o.system;
  std::vector<int32_t> history;  // tokens in the cache
  const bool interactive = o.prompt.empty();
  if (interactive)
    std::fprintf(stderr, "Chatting with %s. /reset clears the conversation, /system TEXT sets a system prompt, "
                         "Ctrl-C stops a reply, Ctrl-D quits.\n", m->source.c_str());
  std::string line;
  for (;;) {
    if (interactive) {
      std::printf("\n> ");
      std::fflush(stdout);
      g_interrupt.store(false);
      if (!std::getline(std::cin, line)) break;
    } else {
      if (!convo.empty()) break;
      line = o.prompt;
    }
    if (line == "/reset") {
      convo.clear();
      history.clear();
      (*cache)->reset();
      std::printf("(conversation cleared)\n");
      continue;
    }
    if (line.rfind("/system", 0) == 0) {
      if (!allow_system) { std::printf("(Gemma 1 and 2 have no system turn)\n"); continue; }
      system = line.size() > 8 ? line.substr(8) : "";
      convo.clear();
      history.clear();
      (*cache)->reset();
      std::printf("(system prompt set; conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    // Render the whole conversation and prefill only what the cache lacks.
    std::vector<ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.insert(msgs.end(), convo.begin(), convo.end());
    msgs.push_back({"user", line});
    auto ids = fmt->render_ids(msgs, render_opt);
    if (!ids.ok()) { std::printf("error: %s\n", ids.message().c_str()); continue; }
    size_t common = 0;
    while (common < history.size() && common < ids->size() && history[common] == (*ids)[common]) ++common;
    (*cache)->truncate(static_cast<int64_t>(common));
    history.resize(common);
    std::vector<int32_t> fresh(ids->begin() + static_cast<std::ptrdiff_t>(common), ids->end());
    if (fresh.empty()) fresh.push_back(ids->back());
    GenerateOptions g;
    g.max_tokens = o.n;
    g.sampling = resolved(o.sampling);
    g.stop_ids = fmt->stop_ids();
    g.cancel = &g_interrupt;
    // Gemma 4 keeps its control tokens in the text: the printer sorts out thinking and tool calls.
    StreamDecoder sd(*tok, o.sampling.stop, /*skip_special=*/!gemma4);
    ReplyPrinter printer(gemma4, isatty(STDOUT_FILENO) != 0);
    auto st = generate(**dec, **cache, fresh, history, g, [&](int32_t id) {
      std::fputs(printer.push(sd.push(id)).c_str(), stdout);
      std::fflush(stdout);
      return !sd.stopped();
    });
    std::fputs(printer.push(sd.finish()).c_str(), stdout);
    std::fputs(printer.finish().c_str(), stdout);
    std::printf("\n");
    if (!st.ok()) {
      std::printf("error: %s\n", st.message().c_str());
      continue;
    }
    if (st->reason == StopReason::Cancelled) std::printf("(interrupted)\n");
    convo.push_back({"user", line});
    convo.push_back({"assistant", printer.answer()});
  }
  return 0;
}

CommandRegistration reg(20, [](CLI::App& root) {
  auto o = std::make_shared<ChatCliOptions>();
  auto* c = root.add_subcommand("chat", "Interactive multi-turn chat in the model's chat format");
  add_model_options(c, o->model);
  add_lora_option(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("--system", o->system, "System prompt (Gemma 3+)");
  c->add_option("-p,--prompt", o->prompt, "Answer this one message and exit");
  c->add_flag("--think", o->think, "Gemma 4: think before answering (the thinking is shown dimmed, and left out of the conversation)");
  c->add_option("-n,--max-tokens", o->n, "Maximum tokens per reply")->capture_default_str();
  add_sampling_options(c, o->sampling);
  c->add_option("-c,--ctx-size", o->ctx, "Context size in tokens (default: min(model max, 8192))");
  c->callback([o] { set_exit_code(run_chat(*o)); });
});

}  // namespace
}  // namespace gf::cli
