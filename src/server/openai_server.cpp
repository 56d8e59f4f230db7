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

#include "server/adapter_routes.h"
#include "server/openai_api.h"
#include "server/web_ui.h"
#include "server/server_extras.h"
#include "tokenizer/stream_decoder.h"

namespace gf {
namespace {

using json = nlohmann::json;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_json(e), "application/json");
}

// Characters (code points) of UTF-8 text: OpenAI's text_offset counts them.
int64_t utf8_chars(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// text_offset of each token: where its text starts in the decoded text (after `base` characters).
class OffsetCounter {
 public:
  OffsetCounter(const Tokenizer& t, int64_t base) : sd_(t), at_(base) {}
  int64_t next(const EngineRequest::Token& t) {
    const int64_t at = at_;
    if (!t.stop) at_ += utf8_chars(sd_.push(t.id));
    return at;
  }

 private:
  StreamDecoder sd_;
  int64_t at_;
};

// A reply's text as it arrives. Gemma 4 chat: control tokens are written out so
// that Gemma4OutputParser sees its markers (the other control tokens are dropped)
// and the text is sorted into content, reasoning and tool calls; otherwise all
// text is content.
class ReplyText {
 public:
  ReplyText(const Tokenizer& t, const std::vector<std::string>& stop, bool gemma4) : tok_(t), sd_(t, stop, !gemma4) {
    if (gemma4) g4_.emplace();
  }
  Gemma4Delta push(int32_t id) {
    Gemma4Delta d;
    if (!g4_) {
      d.content = sd_.push(id);
      return d;
    }
    if (tok_.is_control(id) && !structural(tok_.piece(id))) return d;
    return g4_->push(sd_.push(id));
  }
  Gemma4Delta finish() {
    Gemma4Delta d;
    if (!g4_) {
      d.content = sd_.finish();
      return d;
    }
    d = g4_->push(sd_.finish());
    d.append(g4_->finish());
    return d;
  }
  bool stopped() const { return sd_.stopped(); }
  int tool_calls() const { return g4_ ? g4_->tool_calls() : 0; }
  const char* finish_reason(FinishReason r) const { return openai_finish_reason(r, tool_calls() > 0); }

 private:
  static bool structural(std::string_view piece) {
    return piece == "<|channel>" || piece == "<channel|>" || piece == "<|tool_call>" || piece == "<tool_call|>" || piece == "<|\"|>";
  }
  const Tokenizer& tok_;
  StreamDecoder sd_;
  std::optional<Gemma4OutputParser> g4_;
};

// Latency histograms for /metrics: fixed buckets, so memory does not grow with the requests served.
constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
constexpr size_t kNumBuckets = sizeof(kBuckets) / sizeof(kBuckets[0]);
const char* const kTtft = "gemforge_time_to_first_token_seconds";
const char* const kTpot = "gemforge_time_per_output_token_seconds";
const char* const kE2e = "gemforge_e2e_request_latency_seconds";
struct Histogram {
  int64_t counts[kNumBuckets] = {};  // cumulative: observations <= kBuckets[i]
  int64_t n = 0;
  double sum = 0;
  void observe(double v) {
    for (size_t i = 0; i < kNumBuckets; ++i) counts[i] += v <= kBuckets[i];
    ++n;
    sum += v;
  }
};

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
  std::map<std::string, Histogram> hists;
  std::atomic<int64_t> http_errors{0};
  int listen_fd = -1;
  GrammarCache grammars;  // structured outputs

  Impl(Engine& e, const Tokenizer& t, const ChatFormat* c, std::vector<int32_t> eos, ServerOptions o)
      : engine(e), tok(t), chat(c), eos_ids(std::move(eos)), opt(std::move(o)), grammars(t) {
    svr.new_task_queue = [n = opt.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    svr.set_payload_max_length(opt.max_body_bytes);
    svr.set_socket_options([this](socket_t fd) {
      httplib::default_socket_options(fd);
      listen_fd = fd;
    });
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opt.api_key.empty() || req.path == "/health" || find_web_asset(req.path)) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") != "Bearer " + opt.api_key) {
        send_error(res, {401, "authentication_error", "missing or wrong API key (send Authorization: Bearer KEY)", ""});
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("{\"status\":\"ok\"}", "application/json"); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(json_text(models_json(opt.model_name, engine.max_context(), opt.adapters)), "application/json");
    });
    if (opt.adapters) add_adapter_routes(svr, *opt.adapters);
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { res.set_content(metrics_text(), "text/plain; version=0.0.4"); });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, false); });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, true); });
    register_web_ui(svr);  // GET /: the chat page (server/web_ui.h)
    add_extra_routes();
    svr.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      ++http_errors;
      const int s = res.status;
      send_error(res, {s, s == 404 ? "not_found_error" : s == 413 ? "invalid_request_error" : "api_error",
                       s == 404 ? "no such endpoint" : s == 413 ? "request body too large" : "request failed", ""});
      res.status = s;
    });
  }

  // /tokenize, /detokenize (llama-server's), /v1/embeddings refused.
  void add_extra_routes() {
    auto reply = [](httplib::Response& res, const std::variant<std::string, ApiError>& out) {
      if (const auto* e = std::get_if<ApiError>(&out)) return send_error(res, *e);
      res.set_content(std::get<std::string>(out), "application/json");
    };
    svr.Post("/tokenize", [this, reply](const httplib::Request& req, httplib::Response& res) { reply(res, tokenize_json(req.body, tok)); });
    svr.Post("/detokenize", [this, reply](const httplib::Request& req, httplib::Response& res) { reply(res, detokenize_json(req.body, tok)); });
    svr.Post("/v1/embeddings", [](const httplib::Request&, httplib::Response& res) { send_error(res, embeddings_refusal()); });
  }

  void observe(const char* name, double v) {
    std::lock_guard<std::mutex> lk(hist_mu);
    hists[name].observe(v);
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
      << "# TYPE gemforge_prefix_cache_query_tokens_total counter\ngemforge_prefix_cache_query_tokens_total " << m.prefix_query_tokens_total << "\n"
      << "# TYPE gemforge_prefix_cache_blocks gauge\ngemforge_prefix_cache_blocks " << m.prefix_cached_blocks << "\n"
      << "# TYPE gemforge_forked_prompt_tokens_total counter\ngemforge_forked_prompt_tokens_total " << m.forked_prompt_tokens_total << "\n"
      << "# TYPE gemforge_computed_tokens_total counter\ngemforge_computed_tokens_total " << m.computed_tokens_total << "\n";
    std::lock_guard<std::mutex> lk(hist_mu);
    for (const char* name : {kTtft, kTpot, kE2e}) {
      const Histogram& h = hists[name];
      o << "# TYPE " << name << " histogram\n";
      for (size_t i = 0; i < kNumBuckets; ++i) o << name << "_bucket{le=\"" << kBuckets[i] << "\"} " << h.counts[i] << "\n";
      o << name << "_bucket{le=\"+Inf\"} " << h.n << "\n" << name << "_sum " << h.sum << "\n" << name << "_count " << h.n << "\n";
    }
    return o.str();
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool is_chat) {
    auto parsed = parse_openai_request(req.body, is_chat, tok, chat, opt.defaults);
    if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
    OpenAiRequest& q = std::get<OpenAiRequest>(parsed);
    const GenParams& p = q.params;
    for (const PromptIn& in : q.prompts)
      if (static_cast<int64_t>(in.ids.size()) >= engine.max_context())
        return send_error(res, bad("the prompt has " + std::to_string(in.ids.size()) + " tokens; this server's context is " +
                                       std::to_string(engine.max_context()) + " tokens", is_chat ? "messages" : "prompt"));
    // One engine request per choice, prompt-major; the first choice of each
    // prompt leads and the others fork from its prefill (EngineRequest::forks).
    std::vector<std::shared_ptr<EngineRequest>> rs, leaders;
    for (const PromptIn& in : q.prompts) {
      for (int k = 0; k < p.n; ++k) {
        auto r = std::make_shared<EngineRequest>();
        r->prompt = in.ids;
        r->stop_ids = eos_ids;
        r->stop_ids.insert(r->stop_ids.end(), q.extra_stop_ids.begin(), q.extra_stop_ids.end());
        r->stop_ids.insert(r->stop_ids.end(), p.stop_ids.begin(), p.stop_ids.end());
        r->max_tokens = p.max_tokens;
        if (auto e = bind_model(q.model, opt.model_name, opt.adapters, *r)) return send_error(res, *e);
        r->sampling = p.sampling;
        r->sampling.seed += static_cast<uint64_t>(k);  // distinct choices, each reproducible from the seed
        r->top_logprobs = p.top_logprobs;
        if (p.schema) r->constraint = grammars.constraint(p, r->stop_ids);
        if (p.echo && p.top_logprobs >= 0) {
          r->prompt_logprobs = p.top_logprobs;
          r->emit_stop_token = true;  // echoed log-probs cover every token, the one that ended the reply too
        }
        if (k == 0) leaders.push_back(r);
        else leaders.back()->forks.push_back(r);
        rs.push_back(r);
      }
    }
    // echo with max_tokens 0 and no log-probs: the answer is the prompt itself.
    const bool run = p.max_tokens > 0 || p.top_logprobs >= 0;
    for (size_t i = 0; run && i < leaders.size(); ++i) {
      Status s = engine.submit(leaders[i]);
      if (s.ok()) continue;
      for (auto& r : rs) r->cancelled = true;
      if (s.message() == "queue full") {
        res.set_header("Retry-After", "1");
        return send_error(res, {503, "server_busy", "too many requests are waiting; retry later", ""});
      }
      return send_error(res, bad(s.message()));
    }
    if (!run)
      for (auto& r : rs) {
        r->done = true;
        r->finish_reason = FinishReason::Length;
      }
    const ResponseWriter w{tok, random_id(is_chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                            rs[0]->adapter ? q.model : opt.model_name, is_chat};
    if (!p.stream) return respond_whole(res, rs, q.prompts, p, w, q.gemma4_output);
    const std::string echo_text = p.echo ? q.prompts[0].echo_text : std::string();
    const int64_t prompt_tokens = static_cast<int64_t>(rs[0]->prompt.size());
    res.set_header("Cache-Control", "no-cache");
    struct StreamState {
      bool started = false;  // the chat role chunk / the echoed prompt is sent
      bool finished = false;  // the choice's last chunk is sent
      ReplyText sd;
      OffsetCounter off;
      int calls_sent = 0;  // tool calls streamed so far (the next one's index)
      StreamState(const Tokenizer& t, const GenParams& p, int64_t base, bool g4) : sd(t, p.stop, g4), off(t, base) {}
    };
    const bool g4 = q.gemma4_output;
    auto sts = std::make_shared<std::vector<std::unique_ptr<StreamState>>>();
    for (size_t i = 0; i < rs.size(); ++i) sts->push_back(std::make_unique<StreamState>(tok, p, utf8_chars(echo_text), g4));
    res.set_chunked_content_provider("text/event-stream", [this, rs, p, w, prompt_tokens, sts, echo_text, g4](size_t, httplib::DataSink& sink) {
      auto send = [&](const std::string& event) { return sink.write(event.data(), event.size()); };
      auto drop = [&] {  // the client went away: free the choices' blocks
        for (auto& r : rs) r->cancelled = true;
        return false;
      };
      bool all_done = true, waited = false;
      for (size_t i = 0; i < rs.size(); ++i) {
        StreamState* st = (*sts)[i].get();
        if (st->finished) continue;
        const std::shared_ptr<EngineRequest>& r = rs[i];
        const ResponseWriter wi = w.for_choice(static_cast<int>(i));
        if (!st->started) {
          if (wi.is_chat) {
            if (!send(wi.sse_role())) return drop();
          } else if (p.echo) {
            // The prompt first, with its log-probs once the prefill has computed them.
            json lp = nullptr;
            if (r->prompt_logprobs >= 0) {
              std::unique_lock<std::mutex> lk(r->mu);
              r->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return r->done || r->prompt_lp.size() == r->prompt.size(); });
              if (r->prompt_lp.size() == r->prompt.size()) lp = prompt_logprobs_json(wi, *r);
              else if (!r->done) {
                lk.unlock();
                if (!sink.is_writable()) return drop();
                return true;  // not yet
              }
            }
            if (!send(wi.sse_delta(echo_text, nullptr, lp))) return drop();
          }
          st->started = true;
        }
        std::vector<EngineRequest::Token> toks;
        bool done;
        FinishReason reason;
        std::string error;
        {
          std::unique_lock<std::mutex> lk(r->mu);
          // Wait on the first unfinished choice only: the others are polled.
          if (!waited) r->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return r->done || !r->tokens.empty(); });
          waited = true;
          toks.assign(r->tokens.begin(), r->tokens.end());
          r->tokens.clear();
          done = r->done;
          reason = r->finish_reason;
          error = r->error;
        }
        if (!sink.is_writable()) return drop();
        // One chunk: text (or content, reasoning and tool calls) with log-probs and finish_reason.
        auto chunk = [&](const Gemma4Delta& d, const json& finish, const json& lp) {
          if (!g4) return wi.sse_delta(d.content, finish, lp);
          const json calls = tool_calls_json(d.tool_calls, true, st->calls_sent);
          st->calls_sent += static_cast<int>(d.tool_calls.size());
          return wi.sse_chat_delta(d.content, d.reasoning, calls, finish, lp);
        };
        for (const auto& t : toks) {
          const int64_t at = st->off.next(t);
          const Gemma4Delta d = t.stop ? Gemma4Delta() : st->sd.push(t.id);
          json lp = nullptr;
          if (p.top_logprobs >= 0) lp = wi.logprobs(t.id, t.logprob, t.top, wi.is_chat ? -1 : at);
          if ((!d.empty() || p.top_logprobs >= 0) && !send(chunk(d, nullptr, lp))) return drop();
          if (st->sd.stopped()) {
            r->cancelled = true;
            done = true;
            reason = FinishReason::Stop;
            break;
          }
        }
        if (!done) {
          all_done = false;
          continue;
        }
        const Gemma4Delta tail = st->sd.finish();
        if (!error.empty() && reason == FinishReason::Error) send(wi.sse_error(error));
        else send(chunk(tail, st->sd.finish_reason(reason), nullptr));
        st->finished = true;
        record(*r);
      }
      if (!all_done) return true;
      if (p.include_usage) {
        int64_t completion = 0;
        for (const auto& r : rs) completion += r->completion_tokens;
        send(w.sse_usage(prompt_tokens, completion));
      }
      send(ResponseWriter::sse_done());
      sink.done();
      return true;
    });
  }

  // Every prompt token's log-probs in the completions shape (the first token's are null).
  json prompt_logprobs_json(const ResponseWriter& w, const EngineRequest& r) const {
    json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()}, {"text_offset", json::array()}};
    OffsetCounter off(tok, 0);
    for (const auto& t : r.prompt_lp) append_logprobs(out, w.logprobs(t.id, t.logprob, t.top, off.next(t)));
    return out;
  }

  // Appends one token's completions-shape log-probs to a list of them.
  static void append_logprobs(json& all, const json& one) {
    for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) all[k].push_back(one[k][0]);
  }

  void record(const EngineRequest& r) {
    if (r.submitted_at == 0) return;  // answered without the engine (echo, max_tokens 0, no log-probs)
    if (r.first_token_at > 0) observe(kTtft, r.first_token_at - r.submitted_at);
    const double end = r.finished_at > 0 ? r.finished_at : now_seconds();
    observe(kE2e, end - r.submitted_at);
    if (r.completion_tokens > 1 && r.first_token_at > 0)
      observe(kTpot, (end - r.first_token_at) / static_cast<double>(r.completion_tokens - 1));
  }

  // Waits for one request's reply: the echoed prompt (if any), the text, its log-probs;
  // the engine's error if it failed.
  Result<ChoiceOut> collect(const std::shared_ptr<EngineRequest>& r, const GenParams& p, const ResponseWriter& w,
                            const std::string& echo_text, bool g4) {
    ChoiceOut c;
    FinishReason reason = FinishReason::None;
    std::string error;
    ReplyText sd(tok, p.stop, g4);
    Gemma4Delta reply;
    OffsetCounter off(tok, utf8_chars(echo_text));
    json lp_chat = json::array();
    json lp = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()}, {"text_offset", json::array()}};
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
        const int64_t at = off.next(t);
        if (!t.stop) reply.append(sd.push(t.id));
        if (p.top_logprobs >= 0) {
          if (w.is_chat) lp_chat.push_back(w.logprobs(t.id, t.logprob, t.top)["content"][0]);
          else append_logprobs(lp, w.logprobs(t.id, t.logprob, t.top, at));
        }
        if (sd.stopped()) break;
      }
      if (sd.stopped()) {
        r->cancelled = true;
        reason = FinishReason::Stop;
        break;
      }
      if (done) break;
    }
    if (reason == FinishReason::Error) return Err(error);
    reply.append(sd.finish());
    c.text = echo_text + reply.content;
    c.reasoning = std::move(reply.reasoning);
    if (!reply.tool_calls.empty()) c.tool_calls = tool_calls_json(reply.tool_calls, false);
    c.finish_reason = sd.finish_reason(reason);
    record(*r);
    c.logprobs = nullptr;
    if (p.top_logprobs >= 0) {
      if (w.is_chat) {
        c.logprobs = json{{"content", lp_chat}};
      } else if (p.echo) {
        c.logprobs = prompt_logprobs_json(w, *r);
        for (size_t i = 0; i < lp["tokens"].size(); ++i)
          for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) c.logprobs[k].push_back(lp[k][i]);
      } else {
        c.logprobs = std::move(lp);
      }
    }
    return c;
  }

  void respond_whole(httplib::Response& res, const std::vector<std::shared_ptr<EngineRequest>>& rs, const std::vector<PromptIn>& prompts,
                     const GenParams& p, const ResponseWriter& w, bool gemma4) {
    std::vector<ChoiceOut> choices;
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < rs.size(); ++i) {
      // n choices per prompt: prompt i / n (echo takes n = 1).
      auto c = collect(rs[i], p, w, p.echo ? prompts[i / static_cast<size_t>(p.n)].echo_text : std::string(), gemma4);
      if (!c.ok()) {
        for (auto& r : rs) r->cancelled = true;
        return send_error(res, {500, "api_error", c.message(), ""});
      }
      choices.push_back(std::move(*c));
      if (i % static_cast<size_t>(p.n) == 0) prompt_tokens += static_cast<int64_t>(rs[i]->prompt.size());  // once per prompt
      completion_tokens += rs[i]->completion_tokens;
    }
    res.set_content(w.whole(choices, prompt_tokens, completion_tokens), "application/json");
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
