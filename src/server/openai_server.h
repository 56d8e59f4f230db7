// OpenAI-compatible HTTP front end over the Engine: /v1/completions,
// /v1/chat/completions (JSON or SSE streaming), /v1/models, /health, /metrics.
// It turns text into ids and back; the model and batching live in the Engine.
#pragma once
#include <memory>
#include <string>

#include "core/status.h"
#include "runtime/adapters.h"
#include "runtime/engine.h"
#include "server/openai_api.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace gf {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;        // empty: no authentication
  std::string model_name = "gemma";
  size_t max_body_bytes = 4 << 20;
  int http_threads = 128;     // one per open streaming connection
  RequestDefaults defaults;   // sampling of requests that leave fields out
  AdapterRegistry* adapters = nullptr;  // LoRA adapters beside the base model (server/adapter_routes.h)
};

class OpenAiServer {
 public:
  OpenAiServer(Engine& engine, const Tokenizer& tok, const ChatFormat* chat, std::vector<int32_t> eos_ids, ServerOptions opt);
  ~OpenAiServer();
  // Binds and serves until stop(); returns an error if the port cannot be bound.
  Status listen();
  // Binds to a free port (for tests); returns it.
  Result<int> bind_any();
  Status serve_bound();  // after bind_any
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gf
