// gemforge serve: OpenAI-compatible HTTP server with continuous batching.
#include <csignal>
#include <cstdio>

#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/sampling_options.h"
#include "core/mapped_file.h"
#include "runtime/engine.h"
#include "server/openai_server.h"
#include "train/lora_io.h"

namespace gf::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  ServerOptions server;
  SamplingOptions sampling{RequestDefaults::openai_sampling(), std::nullopt, {}};
  int64_t kv_tokens = 8192;
  int parallel = 32;
  int max_waiting = 256;
  int chunk = 512;
  std::string tokenizer;  // overrides the model's (synthetic models have none)
  std::vector<std::string> loras;  // --lora DIR (every request) or --lora NAME=DIR (requests whose model is NAME)
};

// --lora NAME=DIR (a name without '/', and not an existing folder) or --lora DIR.
bool named_lora(const std::string& arg) {
  const size_t eq = arg.find('=');
  return eq != std::string::npos && eq > 0 && arg.find('/') > eq && !is_directory(arg);
}

OpenAiServer* g_server = nullptr;
extern "C" void on_stop_signal(int) {
  if (g_server) g_server->stop();
}

int run_serve(ServeOptions o) {
  std::vector<std::pair<std::string, std::string>> named;
  for (const std::string& a : o.loras) {
    if (named_lora(a)) named.emplace_back(a.substr(0, a.find('=')), a.substr(a.find('=') + 1));
    else if (o.model.lora.empty()) o.model.lora = a;
    else return fail(Err("--lora DIR is given twice (to serve several adapters, name them: --lora NAME=DIR)"));
  }
  if (!o.model.lora.empty() && !named.empty())
    return fail(Err("--lora " + o.model.lora + " adapts every request; it cannot be combined with named adapters (--lora NAME=DIR)"));
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  const std::string tok_path = o.tokenizer.empty() ? m->tokenizer_path : o.tokenizer;
  if (tok_path.empty()) return fail(Err("the model has no tokenizer; the server needs one (--tokenizer PATH)"));
  auto tok = Tokenizer::from_path(tok_path);
  if (!tok.ok()) return fail(tok.status());
  auto fmt = ChatFormat::for_tokenizer(*tok, m->spec.family >= Family::Gemma3);
  if (fmt.ok()) follow_shipped_template(*fmt, m->source);
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  auto engine = Engine::create(**dec, engine_options(o.kv_tokens, o.parallel, o.chunk, static_cast<size_t>(o.max_waiting)));
  if (!engine.ok()) return fail(engine.status());
  o.server.defaults = {o.sampling.params, o.sampling.seed, o.sampling.stop};
  if (o.server.model_name.empty()) o.server.model_name = m->source.substr(m->source.find_last_of('/') + 1);
  AdapterRegistry adapters(**engine, [&](const std::string& dir) { return train::load_adapter_view(dir, m->spec); }, o.server.model_name);
  for (const auto& [name, dir] : named) {
    const AdapterOutcome r = adapters.load(name, dir);
    if (r.status != AdapterStatus::Ok) return fail(Err(r.message));
    std::fprintf(stderr, "adapter %s: %s\n", name.c_str(), dir.c_str());
  }
  o.server.adapters = &adapters;
  OpenAiServer server(**engine, *tok, fmt.ok() ? &*fmt : nullptr, m->spec.eos_token_ids, o.server);
  g_server = &server;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::fprintf(stderr, "serving %s on http://%s:%d/v1 (KV cache %lld tokens, %d parallel)%s\n", o.server.model_name.c_str(),
               o.server.host.c_str(), o.server.port, static_cast<long long>(o.kv_tokens), o.parallel,
               o.server.api_key.empty() ? "" : ", API key required");
  Status s = server.listen();
  g_server = nullptr;
  if (!s.ok()) return fail(s);
  return 0;
}

CommandRegistration reg(40, [](CLI::App& root) {
  auto o = std::make_shared<ServeOptions>();
  auto* c = root.add_subcommand("serve", "OpenAI-compatible server (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics)");
  add_model_options(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("--lora", o->loras,
                 "LoRA adapter (PEFT folder), unmerged: DIR adapts every request; NAME=DIR (repeatable) serves it beside the base "
                 "model to requests whose \"model\" is NAME");
  o->server.model_name.clear();
  c->add_option("--host", o->server.host, "Address to bind (loopback by default)")->capture_default_str();
  c->add_option("--port", o->server.port, "Port")->capture_default_str();
  c->add_option("--api-key", o->server.api_key, "Require Authorization: Bearer KEY");
  c->add_option("--model-name", o->server.model_name, "Model id reported by /v1/models (default: the file name)");
  c->add_option("--kv-tokens", o->kv_tokens, "KV cache size in tokens, shared by all requests")->capture_default_str();
  c->add_option("--parallel", o->parallel, "Most sequences per batch step")->capture_default_str();
  c->add_option("--max-waiting", o->max_waiting, "Queued requests beyond which the server answers 503")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "Tokenizer to use instead of the model's (tokenizer.json[.xz], GGUF or folder)");
  c->add_option("--chunk", o->chunk, "Prefill tokens per step (chunked prefill)")->capture_default_str();
  // For requests that leave a field out (OpenAI's defaults unless given here).
  add_sampling_options(c, o->sampling);
  c->callback([o] { set_exit_code(run_serve(*o)); });
});

}  // namespace
}  // namespace gf::cli
