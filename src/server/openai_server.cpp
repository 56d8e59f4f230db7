#include "server/openai_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/stream_decoder.h"

namespace gf {
namespace {

using json = nlohmann::json;

struct ApiError {
  int status;
  std::string type, message, param;
};

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  json body = {{"error", {{"message", e.message}, {"type", e.type}, {"param", e.param.empty() ? json(nullptr) : json(e.param)}, {"code", nullptr}}}};
  res.set_content(body.dump(), "application/json");
}

ApiError bad(const std::string& msg, const std::string& param = "") { return {400, "invalid_request_error", msg, param}; }

// A parsed generation request (both endpoints).
struct GenParams {
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  int top_logprobs = -1;
};

// Validates the fields shared by both endpoints; unknown fields are an error, as the
// strict OpenAI servers do, so typos do not silently change behaviour.
std::optional<ApiError> parse_common(const json& j, bool chat, GenParams& p, const std::set<std::string>& extra) {
  static const std::set<std::string> common = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
                                                "min_p", "stop", "seed", "n", "presence_penalty", "frequency_penalty",
                                                "repetition_penalty", "stream", "stream_options", "logprobs", "top_logprobs", "user"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!common.count(it.key()) && !extra.count(it.key())) return bad("unknown field \"" + it.key() + "\"", it.key());
  auto num = [&](const char* k, double lo, double hi, auto& out) -> std::optional<ApiError> {
    if (!j.contains(k) || j[k].is_null()) return std::nullopt;
    if (!j[k].is_number()) return bad(std::string("\"") + k + "\" must be a number", k);
    const double v = j[k].get<double>();
    if (!(v >= lo && v <= hi)) return bad(std::string("\"") + k + "\" must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", k);
    out = static_cast<std::remove_reference_t<decltype(out)>>(v);
    return std::nullopt;
  };
  p.sampling.temperature = 1.0f;
  p.sampling.top_k = 0;
  p.sampling.top_p = 1.0f;
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (j.contains(k) && !j[k].is_null()) {
      if (!j[k].is_number_integer()) return bad(std::string("\"") + k + "\" must be an integer", k);
      p.max_tokens = j[k].get<int>();
      if (p.max_tokens <= 0) return bad(std::string("\"") + k + "\" must be at least 1", k);
    }
  if (auto e = num("temperature", 0, 100, p.sampling.temperature)) return e;
  if (auto e = num("top_p", 0, 1, p.sampling.top_p)) return e;
  if (auto e = num("top_k", -1, 1e9, p.sampling.top_k)) return e;
  if (p.sampling.top_k < 0) p.sampling.top_k = 0;
  if (auto e = num("min_p", 0, 1, p.sampling.min_p)) return e;
  if (auto e = num("presence_penalty", -2, 2, p.sampling.presence_penalty)) return e;
  if (auto e = num("frequency_penalty", -2, 2, p.sampling.frequency_penalty)) return e;
  if (auto e = num("repetition_penalty", 0.01, 100, p.sampling.repetition_penalty)) return e;
  double seed = static_cast<double>(std::random_device{}());
  if (auto e = num("seed", -9.2e18, 9.2e18, seed)) return e;
  p.sampling.seed = static_cast<uint64_t>(static_cast<int64_t>(seed));
  p.sampling.penalty_last_n = -1;
  if (j.contains("n") && !j["n"].is_null()) {
    if (!j["n"].is_number_integer() || j["n"].get<int>() != 1) return bad("only n = 1 is supported", "n");
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    if (j["stop"].is_string()) p.stop.push_back(j["stop"]);
    else if (j["stop"].is_array() && j["stop"].size() <= 4) {
      for (const auto& s : j["stop"]) {
        if (!s.is_string()) return bad("\"stop\" must be a string or up to 4 strings", "stop");
        p.stop.push_back(s);
      }
    } else {
      return bad("\"stop\" must be a string or up to 4 strings", "stop");
    }
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return bad("\"stream\" must be true or false", "stream");
    p.stream = j["stream"];
  }
  if (j.contains("stream_options") && j["stream_options"].is_object())
    p.include_usage = j["stream_options"].value("include_usage", false);
  if (chat) {
    if (j.value("logprobs", false) == true) {
      p.top_logprobs = 0;
      if (j.contains("top_logprobs") && j["top_logprobs"].is_number_integer()) p.top_logprobs = j["top_logprobs"];
      if (p.top_logprobs < 0 || p.top_logprobs > 20) return bad("\"top_logprobs\" must be in [0, 20]", "top_logprobs");
    }
  } else if (j.contains("logprobs") && !j["logprobs"].is_null()) {
    if (!j["logprobs"].is_number_integer() || j["logprobs"].get<int>() < 0 || j["logprobs"].get<int>() > 20)
      return bad("\"logprobs\" must be an integer in [0, 20]", "logprobs");
    p.top_logprobs = j["logprobs"];
  }
  return std::nullopt;
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{1};
  std::ostringstream o;
  o << prefix << std::hex << (static_cast<uint64_t>(now_seconds() * 1e6) ^ (counter.fetch_add(1) << 40));
  return o.str();
}

}  // namespace

struct OpenAiServer::Impl {
  Engine& engine;
  const Tokenizer& tok;
  const ChatFormat* chat;
  std::vector<int32_t> eos_ids;
  ServerOptions opt;
  httplib::Server svr;
  // Latency histograms (seconds) for /metrics.
  std::mutex hist_mu;
  std::map<std::string, std::vector<double>> hist_samples;
  std::atomic<int64_t> http_errors{0};
  int listen_fd = -1;

  Impl(Engine& e, const Tokenizer& t, const ChatFormat* c, std::vector<int32_t> eos, ServerOptions o)
      : engine(e), tok(t), chat(c), eos_ids(std::move(eos)), opt(std::move(o)) {
    svr.new_task_queue = [n = opt.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    svr.set_payload_max_length(opt.max_body_bytes);
    svr.set_socket_options([this](socket_t fd) {
      httplib::default_socket_options(fd);
      listen_fd = fd;
    });
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opt.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") != "Bearer " + opt.api_key) {
        send_error(res, {401, "authentication_error", "missing or wrong API key (send Authorization: Bearer KEY)", ""});
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("{\"status\":\"ok\"}", "application/json"); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json j = {{"object", "list"}, {"data", {{{"id", opt.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "gemforge"},
                                               {"max_model_len", engine.max_context()}}}}};
      res.set_content(j.dump(), "application/json");
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { res.set_content(metrics_text(), "text/plain; version=0.0.4"); });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, false); });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, true); });
    svr.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      ++http_errors;
      const int s = res.status;
      send_error(res, {s, s == 404 ? "not_found_error" : s == 413 ? "invalid_request_error" : "api_error",
                       s == 404 ? "no such endpoint" : s == 413 ? "request body too large" : "request failed", ""});
      res.status = s;
    });
  }

  void observe(const std::string& name, double v) {
    std::lock_guard<std::mutex> lk(hist_mu);
    hist_samples[name].push_back(v);
  }

  std::string metrics_text() {
    EngineMetrics m = engine.metrics();
    std::ostringstream o;
    o << "# TYPE gemforge_requests_running gauge\ngemforge_requests_running " << m.running << "\n"
      << "# TYPE gemforge_requests_waiting gauge\ngemforge_requests_waiting " << m.waiting << "\n"
      << "# TYPE gemforge_kv_cache_usage_ratio gauge\ngemforge_kv_cache_usage_ratio "
      << (m.kv_blocks_total ? static_cast<double>(m.kv_blocks_used) / static_cast<double>(m.kv_blocks_total) : 0.0) << "\n"
      << "# TYPE gemforge_prompt_tokens_total counter\ngemforge_prompt_tokens_total " << m.prompt_tokens_total << "\n"
      << "# TYPE gemforge_generation_tokens_total counter\ngemforge_generation_tokens_total " << m.generation_tokens_total << "\n"
      << "# TYPE gemforge_requests_total counter\ngemforge_requests_total " << m.requests_total << "\n"
      << "# TYPE gemforge_preemptions_total counter\ngemforge_preemptions_total " << m.preemptions_total << "\n"
      << "# TYPE gemforge_prefix_cache_hit_tokens_total counter\ngemforge_prefix_cache_hit_tokens_total " << m.prefix_hit_tokens_total << "\n"
      << "# TYPE gemforge_prefix_cache_blocks gauge\ngemforge_prefix_cache_blocks " << m.prefix_cached_blocks << "\n";
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    std::lock_guard<std::mutex> lk(hist_mu);
    for (const char* name : {"gemforge_time_to_first_token_seconds", "gemforge_time_per_output_token_seconds", "gemforge_e2e_request_latency_seconds"}) {
      const auto& v = hist_samples[name];
      o << "# TYPE " << name << " histogram\n";
      for (double b : buckets) o << name << "_bucket{le=\"" << b << "\"} " << std::count_if(v.begin(), v.end(), [&](double x) { return x <= b; }) << "\n";
      double sum = 0;
      for (double x : v) sum += x;
      o << name << "_bucket{le=\"+Inf\"} " << v.size() << "\n" << name << "_sum " << sum << "\n" << name << "_count " << v.size() << "\n";
    }
    return o.str();
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool is_chat) {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded()) return send_error(res, bad("the body is not valid JSON"));
    if (!j.is_object()) return send_error(res, bad("the body must be a JSON object"));
    GenParams p;
    if (auto e = parse_common(j, is_chat, p, is_chat ? std::set<std::string>{"messages"} : std::set<std::string>{"prompt", "echo", "suffix"}))
      return send_error(res, *e);
    auto r = std::make_shared<EngineRequest>();
    r->stop_ids = eos_ids;
    if (is_chat) {
      if (!chat) return send_error(res, bad("this model has no chat format; use /v1/completions"));
      if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
        return send_error(res, bad("\"messages\" must be a non-empty array", "messages"));
      std::vector<ChatMessage> msgs;
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
          return send_error(res, bad("each message needs a string \"role\" and \"content\"", "messages"));
        std::string content;
        if (m["content"].is_string()) content = m["content"];
        else if (m["content"].is_array()) {
          for (const auto& part : m["content"]) {
            if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
              return send_error(res, bad("only text content parts are supported", "messages"));
            content += part["text"].get<std::string>();
          }
        } else {
          return send_error(res, bad("message content must be a string or text parts", "messages"));
        }
        std::string role = m["role"];
        if (role != "system" && role != "user" && role != "assistant" && role != "model")
          return send_error(res, bad("unknown role \"" + role + "\"", "messages"));
        msgs.push_back({role, content});
      }
      auto ids = chat->render_ids(msgs);  // content is text, never control tokens
      if (!ids.ok()) return send_error(res, bad(ids.message(), "messages"));
      r->prompt = *ids;
      for (int32_t id : chat->stop_ids()) r->stop_ids.push_back(id);
    } else {
      if (!j.contains("prompt")) return send_error(res, bad("\"prompt\" is required", "prompt"));
      if (j["prompt"].is_string()) {
        r->prompt = tok.encode(j["prompt"].get<std::string>(), true, false);
      } else if (j["prompt"].is_array() && !j["prompt"].empty() && j["prompt"][0].is_number_integer()) {
        for (const auto& x : j["prompt"]) {
          if (!x.is_number_integer() || !tok.valid_id(x.get<int32_t>())) return send_error(res, bad("\"prompt\" token ids must be valid ids", "prompt"));
          r->prompt.push_back(x.get<int32_t>());
        }
      } else {
        return send_error(res, bad("\"prompt\" must be a string or an array of token ids (one prompt per request)", "prompt"));
      }
      if (r->prompt.empty()) return send_error(res, bad("\"prompt\" is empty", "prompt"));
    }
    if (static_cast<int64_t>(r->prompt.size()) >= engine.max_context())
      return send_error(res, bad("the prompt has " + std::to_string(r->prompt.size()) + " tokens; this server's context is " +
                                     std::to_string(engine.max_context()) + " tokens", is_chat ? "messages" : "prompt"));
    r->max_tokens = p.max_tokens;
    r->sampling = p.sampling;
    r->top_logprobs = p.top_logprobs;
    Status s = engine.submit(r);
    if (!s.ok()) {
      if (s.message() == "queue full") {
        res.set_header("Retry-After", "1");
        return send_error(res, {503, "server_busy", "too many requests are waiting; retry later", ""});
      }
      return send_error(res, bad(s.message()));
    }
    const std::string id = random_id(is_chat ? "chatcmpl-" : "cmpl-");
    const int64_t created = static_cast<int64_t>(std::time(nullptr));
    const int64_t prompt_tokens = static_cast<int64_t>(r->prompt.size());
    if (!p.stream) return respond_whole(res, r, p, is_chat, id, created, prompt_tokens);
    res.set_header("Cache-Control", "no-cache");
    auto sd = std::make_shared<StreamDecoder>(tok, p.stop);
    auto state = std::make_shared<int>(0);  // 0: role chunk pending (chat), 1: streaming, 2: done
    res.set_chunked_content_provider("text/event-stream", [this, r, p, is_chat, id, created, prompt_tokens, sd, state](size_t, httplib::DataSink& sink) {
      auto send = [&](const json& chunk) {
        const std::string line = "data: " + chunk.dump() + "\n\n";
        return sink.write(line.data(), line.size());
      };
      auto chunk_of = [&](const std::string& text, const json& finish, const json& logprobs) {
        json c = {{"id", id}, {"created", created}, {"model", opt.model_name}};
        if (is_chat) {
          c["object"] = "chat.completion.chunk";
          json delta = json::object();
          if (!text.empty()) delta["content"] = text;
          c["choices"] = {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", logprobs}}};
        } else {
          c["object"] = "text_completion";
          c["choices"] = {{{"index", 0}, {"text", text}, {"finish_reason", finish}, {"logprobs", logprobs}}};
        }
        return c;
      };
      if (*state == 0) {
        *state = 1;
        if (is_chat) {
          json c = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", opt.model_name},
                    {"choices", {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}}}};
          if (!send(c)) { r->cancelled = true; return false; }
        }
      }
      std::vector<EngineRequest::Token> toks;
      bool done;
      std::string reason, error;
      {
        std::unique_lock<std::mutex> lk(r->mu);
        r->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return r->done || !r->tokens.empty(); });
        toks.assign(r->tokens.begin(), r->tokens.end());
        r->tokens.clear();
        done = r->done;
        reason = r->finish_reason;
        error = r->error;
      }
      if (!sink.is_writable()) { r->cancelled = true; return false; }  // client went away: free its blocks
      for (const auto& t : toks) {
        const std::string text = sd->push(t.id);
        json lp = nullptr;
        if (p.top_logprobs >= 0) lp = logprobs_json(t, is_chat);
        if ((!text.empty() || p.top_logprobs >= 0) && !send(chunk_of(text, nullptr, lp))) { r->cancelled = true; return false; }
        if (sd->stopped()) {
          r->cancelled = true;
          done = true;
          reason = "stop";
          break;
        }
      }
      if (!done) return true;
      const std::string tail = sd->finish();
      if (!error.empty() && reason == "error") {
        json e = {{"error", {{"message", error}, {"type", "api_error"}}}};
        const std::string line = "data: " + e.dump() + "\n\n";
        sink.write(line.data(), line.size());
      } else {
        send(chunk_of(tail, reason == "cancelled" ? "stop" : reason, nullptr));
      }
      if (p.include_usage) {
        json u = {{"id", id}, {"object", is_chat ? "chat.completion.chunk" : "text_completion"}, {"created", created}, {"model", opt.model_name},
                  {"choices", json::array()},
                  {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", r->completion_tokens}, {"total_tokens", prompt_tokens + r->completion_tokens}}}};
        send(u);
      }
      const std::string end = "data: [DONE]\n\n";
      sink.write(end.data(), end.size());
      record(*r);
      sink.done();
      return true;
    });
  }

  json logprobs_json(const EngineRequest::Token& t, bool is_chat) {
    const std::string text = tok.token_bytes(t.id);
    if (is_chat) {
      json top = json::array();
      for (const auto& [id, lp] : t.top) top.push_back({{"token", tok.token_bytes(id)}, {"logprob", lp}});
      return {{"content", {{{"token", text}, {"logprob", t.logprob}, {"top_logprobs", top}}}}};
    }
    json top = json::object();
    for (const auto& [id, lp] : t.top) top[tok.token_bytes(id)] = lp;
    return {{"tokens", {text}}, {"token_logprobs", {t.logprob}}, {"top_logprobs", {top}}};
  }

  void record(const EngineRequest& r) {
    if (r.first_token_at > 0) observe("gemforge_time_to_first_token_seconds", r.first_token_at - r.submitted_at);
    const double end = r.finished_at > 0 ? r.finished_at : now_seconds();
    observe("gemforge_e2e_request_latency_seconds", end - r.submitted_at);
    if (r.completion_tokens > 1 && r.first_token_at > 0)
      observe("gemforge_time_per_output_token_seconds", (end - r.first_token_at) / static_cast<double>(r.completion_tokens - 1));
  }

  void respond_whole(httplib::Response& res, const std::shared_ptr<EngineRequest>& r, const GenParams& p, bool is_chat,
                     const std::string& id, int64_t created, int64_t prompt_tokens) {
    StreamDecoder sd(tok, p.stop);
    std::string text;
    json lp_chat = json::array();
    json lp_tokens = json::array(), lp_values = json::array(), lp_top = json::array();
    std::string reason, error;
    for (;;) {
      std::vector<EngineRequest::Token> toks;
      bool done;
      {
        std::unique_lock<std::mutex> lk(r->mu);
        r->cv.wait(lk, [&] { return r->done || !r->tokens.empty(); });
        toks.assign(r->tokens.begin(), r->tokens.end());
        r->tokens.clear();
        done = r->done;
        reason = r->finish_reason;
        error = r->error;
      }
      for (const auto& t : toks) {
        text += sd.push(t.id);
        if (p.top_logprobs >= 0) {
          json l = logprobs_json(t, is_chat);
          if (is_chat) lp_chat.push_back(l["content"][0]);
          else {
            lp_tokens.push_back(l["tokens"][0]);
            lp_values.push_back(l["token_logprobs"][0]);
            lp_top.push_back(l["top_logprobs"][0]);
          }
        }
        if (sd.stopped()) break;
      }
      if (sd.stopped()) {
        r->cancelled = true;
        reason = "stop";
        break;
      }
      if (done) break;
    }
    if (reason == "error") return send_error(res, {500, "api_error", error, ""});
    text += sd.finish();
    record(*r);
    json usage = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", r->completion_tokens}, {"total_tokens", prompt_tokens + r->completion_tokens}};
    json body = {{"id", id}, {"created", created}, {"model", opt.model_name}, {"usage", usage}};
    json logprobs = nullptr;
    if (p.top_logprobs >= 0)
      logprobs = is_chat ? json{{"content", lp_chat}} : json{{"tokens", lp_tokens}, {"token_logprobs", lp_values}, {"top_logprobs", lp_top}};
    if (is_chat) {
      body["object"] = "chat.completion";
      body["choices"] = {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}}, {"finish_reason", reason}, {"logprobs", logprobs}}};
    } else {
      body["object"] = "text_completion";
      body["choices"] = {{{"index", 0}, {"text", text}, {"finish_reason", reason}, {"logprobs", logprobs}}};
    }
    res.set_content(body.dump(), "application/json");
  }
};

OpenAiServer::OpenAiServer(Engine& engine, const Tokenizer& tok, const ChatFormat* chat, std::vector<int32_t> eos_ids, ServerOptions opt)
    : impl_(std::make_unique<Impl>(engine, tok, chat, std::move(eos_ids), std::move(opt))) {}
OpenAiServer::~OpenAiServer() { stop(); }

// The system cpp-httplib listens with a backlog of 5 (compiled into the
// library). A burst of clients connecting at once then overflows the accept
// queue, and connections completed from SYN cookies were seen to fail with
// read errors; listen() again on the bound socket to raise the backlog.
static void widen_backlog(int fd) {
  if (fd >= 0) ::listen(fd, SOMAXCONN);
}

Status OpenAiServer::listen() {
  if (!impl_->svr.bind_to_port(impl_->opt.host.c_str(), impl_->opt.port))
    return Err("cannot listen on " + impl_->opt.host + ":" + std::to_string(impl_->opt.port) + " (port in use or not allowed)");
  widen_backlog(impl_->listen_fd);
  return serve_bound();
}

Result<int> OpenAiServer::bind_any() {
  const int port = impl_->svr.bind_to_any_port(impl_->opt.host.c_str());
  if (port <= 0) return Err("cannot bind " + impl_->opt.host);
  widen_backlog(impl_->listen_fd);
  return port;
}

Status OpenAiServer::serve_bound() {
  if (!impl_->svr.listen_after_bind()) return Err("server stopped with an error");
  return Ok();
}

void OpenAiServer::stop() {
  if (impl_) impl_->svr.stop();
}

}  // namespace gf
