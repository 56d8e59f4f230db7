#include "server/openai_api.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace gf {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPromptsPerRequest = 64;

// An integer field's value, saturated to int64 (get<int>() wrapped 4294967297 to 1).
int64_t int_value(const json& v) {
  if (v.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX));
  return v.get<int64_t>();
}

// j[k] as a bool; absent or null leaves out as it is. (json::value() throws
// type_error on a value of another type.)
std::optional<ApiError> get_bool(const json& j, const char* k, const std::string& name, bool& out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_boolean()) return bad("\"" + name + "\" must be true or false", name);
  out = j[k].get<bool>();
  return std::nullopt;
}

}  // namespace

ApiError bad(const std::string& msg, const std::string& param) { return {400, "invalid_request_error", msg, param}; }

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
  if (!chat && extra.count("echo"))
    if (auto e = get_bool(j, "echo", "echo", p.echo)) return e;
  p.sampling.temperature = 1.0f;
  p.sampling.top_k = 0;
  p.sampling.top_p = 1.0f;
  if (j.contains("max_tokens") && !j["max_tokens"].is_null() && j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null())
    return bad("give one of \"max_tokens\" and \"max_completion_tokens\"", "max_completion_tokens");
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (j.contains(k) && !j[k].is_null()) {
      if (!j[k].is_number_integer()) return bad(std::string("\"") + k + "\" must be an integer", k);
      const int64_t v = int_value(j[k]);
      if (v < (p.echo ? 0 : 1))
        return bad(std::string("\"") + k + "\" must be at least " + (p.echo ? "0" : "1 (0 only with \"echo\": true, to score the prompt)"), k);
      p.max_tokens = static_cast<int>(std::min<int64_t>(v, INT32_MAX));
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
    if (!j["n"].is_number_integer() || int_value(j["n"]) != 1) return bad("only n = 1 is supported", "n");
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
  if (auto e = get_bool(j, "stream", "stream", p.stream)) return e;
  // Every accepted field is honoured or refused: nothing is dropped silently.
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& so = j["stream_options"];
    if (!so.is_object()) return bad("\"stream_options\" must be an object", "stream_options");
    for (auto it = so.begin(); it != so.end(); ++it)
      if (it.key() != "include_usage") return bad("unsupported stream option \"" + it.key() + "\" (only include_usage)", "stream_options");
    if (auto e = get_bool(so, "include_usage", "stream_options.include_usage", p.include_usage)) return e;
    if (!p.stream) return bad("\"stream_options\" is only allowed with \"stream\": true", "stream_options");
  }
  for (const char* k : {"model", "user"})  // model: this server serves one; user: an end-user id, no effect on the reply
    if (j.contains(k) && !j[k].is_null() && !j[k].is_string()) return bad(std::string("\"") + k + "\" must be a string", k);
  const bool has_top = j.contains("top_logprobs") && !j["top_logprobs"].is_null();
  if (chat) {
    bool logprobs = false;
    if (auto e = get_bool(j, "logprobs", "logprobs", logprobs)) return e;
    if (has_top && !logprobs) return bad("\"top_logprobs\" needs \"logprobs\": true", "top_logprobs");
    if (logprobs) {
      int64_t top = 0;
      if (has_top) {
        if (!j["top_logprobs"].is_number_integer()) return bad("\"top_logprobs\" must be an integer in [0, 20]", "top_logprobs");
        top = int_value(j["top_logprobs"]);
      }
      if (top < 0 || top > 20) return bad("\"top_logprobs\" must be in [0, 20]", "top_logprobs");
      p.top_logprobs = static_cast<int>(top);
    }
  } else {
    if (has_top) return bad("\"top_logprobs\" is a chat field; /v1/completions takes \"logprobs\": N", "top_logprobs");
    if (j.contains("logprobs") && !j["logprobs"].is_null()) {
      if (!j["logprobs"].is_number_integer() || int_value(j["logprobs"]) < 0 || int_value(j["logprobs"]) > 20)
        return bad("\"logprobs\" must be an integer in [0, 20]", "logprobs");
      p.top_logprobs = static_cast<int>(int_value(j["logprobs"]));
    }
    // Gemma has no fill-in-the-middle tokens: a suffix cannot be honoured.
    if (j.contains("suffix") && !j["suffix"].is_null())
      return bad("\"suffix\" is not supported: Gemma models have no fill-in-the-middle", "suffix");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_chat_messages(const json& j, const Tokenizer& tok, const ChatFormat* chat, std::vector<int32_t>& ids) {
  if (!chat) return bad("this model has no chat format; use /v1/completions");
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    return bad("\"messages\" must be a non-empty array", "messages");
  std::vector<ChatMessage> msgs;
  for (const auto& m : j["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      return bad("each message needs a string \"role\" and \"content\"", "messages");
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.key() != "role" && it.key() != "content")
        return bad("unsupported message field \"" + it.key() + "\" (only role and content)", "messages");
    std::string content;
    if (m["content"].is_string()) content = m["content"];
    else if (m["content"].is_array()) {
      for (const auto& part : m["content"]) {
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") || !part["text"].is_string())
          return bad("only text content parts are supported", "messages");
        content += part["text"].get<std::string>();
      }
    } else {
      return bad("message content must be a string or text parts", "messages");
    }
    std::string role = m["role"];
    if (role != "system" && role != "user" && role != "assistant" && role != "model")
      return bad("unknown role \"" + role + "\"", "messages");
    msgs.push_back({role, content});
  }
  auto r = chat->render_ids(msgs);  // content is text, never control tokens
  if (!r.ok()) return bad(r.message(), "messages");
  ids = *r;
  return std::nullopt;
}

std::optional<ApiError> parse_prompts(const json& j, const Tokenizer& tok, std::vector<PromptIn>& out) {
  if (!j.contains("prompt")) return bad("\"prompt\" is required", "prompt");
  const json& pr = j["prompt"];
  auto ids_of = [&](const json& a, PromptIn& in) -> std::optional<ApiError> {
    for (const auto& x : a) {
      if (!x.is_number_integer() || int_value(x) < 0 || int_value(x) >= tok.vocab_size())
        return bad("\"prompt\" token ids must be valid ids", "prompt");
      in.ids.push_back(static_cast<int32_t>(int_value(x)));
    }
    in.echo_text = tok.decode(in.ids, true);
    return std::nullopt;
  };
  auto text_of = [&](const json& t, PromptIn& in) {
    in.echo_text = t.get<std::string>();
    in.ids = tok.encode(in.echo_text, true, false);
  };
  const char* shape = "\"prompt\" must be a string, an array of token ids, or an array of those";
  if (pr.is_string()) {
    out.emplace_back();
    text_of(pr, out.back());
  } else if (pr.is_array() && !pr.empty() && pr[0].is_number_integer()) {
    out.emplace_back();
    if (auto e = ids_of(pr, out.back())) return e;
  } else if (pr.is_array() && !pr.empty()) {
    if (pr.size() > kMaxPromptsPerRequest)
      return bad("at most " + std::to_string(kMaxPromptsPerRequest) + " prompts per request", "prompt");
    for (const auto& one : pr) {
      out.emplace_back();
      if (one.is_string()) text_of(one, out.back());
      else if (one.is_array() && !one.empty() && one[0].is_number_integer()) {
        if (auto e = ids_of(one, out.back())) return e;
      } else {
        return bad(shape, "prompt");
      }
    }
  } else {
    return bad(shape, "prompt");
  }
  for (const auto& in : out)
    if (in.ids.empty()) return bad("\"prompt\" is empty", "prompt");
  return std::nullopt;
}

std::variant<OpenAiRequest, ApiError> parse_openai_request(const std::string& body, bool is_chat, const Tokenizer& tok,
                                                           const ChatFormat* chat) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return bad("the body is not valid JSON");
  if (!j.is_object()) return bad("the body must be a JSON object");
  OpenAiRequest r;
  if (auto e = parse_common(j, is_chat, r.params, is_chat ? std::set<std::string>{"messages"} : std::set<std::string>{"prompt", "echo", "suffix"}))
    return *e;
  if (is_chat) {
    r.prompts.emplace_back();
    if (auto e = parse_chat_messages(j, tok, chat, r.prompts.back().ids)) return *e;
    r.extra_stop_ids = chat->stop_ids();
  } else if (auto e = parse_prompts(j, tok, r.prompts)) {
    return *e;
  }
  if (r.params.stream && r.prompts.size() > 1) return bad("\"stream\" takes one prompt per request", "prompt");
  return r;
}

// Token bytes are not always UTF-8 (a byte-fallback token is one byte of a
// character; GGUF pieces may be anything): plain dump() throws on them.
std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_json(const ApiError& e) {
  json body = {{"error", {{"message", e.message}, {"type", e.type}, {"param", e.param.empty() ? json(nullptr) : json(e.param)}, {"code", nullptr}}}};
  return json_text(body);
}

namespace {
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}
}  // namespace

std::string token_text(const Tokenizer& tok, int32_t id) {
  if (!tok.valid_id(id)) return "";
  const std::string& b = tok.token_bytes(id);
  if (valid_utf8(b)) return b;
  std::string out = "bytes:";
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : b) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
  return out;
}

json ResponseWriter::logprobs(int32_t token, float logprob, const std::vector<std::pair<int32_t, float>>& top, int64_t text_offset) const {
  const std::string text = token_text(tok, token);
  // The first prompt token of an echo has no log-prob (NaN): null, as OpenAI.
  const json value = std::isnan(logprob) ? json(nullptr) : json(logprob);
  if (is_chat) {
    json t = json::array();
    for (const auto& [i, lp] : top) t.push_back({{"token", token_text(tok, i)}, {"logprob", lp}});
    return {{"content", {{{"token", text}, {"logprob", value}, {"top_logprobs", t}}}}};
  }
  json t = json::object();
  for (const auto& [i, lp] : top) t[token_text(tok, i)] = lp;
  json out = {{"tokens", {text}}, {"token_logprobs", {value}}, {"top_logprobs", {std::isnan(logprob) ? json(nullptr) : t}}};
  if (text_offset >= 0) out["text_offset"] = {text_offset};
  return out;
}

std::string ResponseWriter::sse_role() const {
  json c = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
            {"choices", {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}}}};
  return "data: " + json_text(c) + "\n\n";
}

std::string ResponseWriter::sse_delta(const std::string& text, const json& finish, const json& logprobs) const {
  json c = {{"id", id}, {"created", created}, {"model", model}};
  if (is_chat) {
    c["object"] = "chat.completion.chunk";
    json delta = json::object();
    if (!text.empty()) delta["content"] = text;
    c["choices"] = {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", logprobs}}};
  } else {
    c["object"] = "text_completion";
    c["choices"] = {{{"index", 0}, {"text", text}, {"finish_reason", finish}, {"logprobs", logprobs}}};
  }
  return "data: " + json_text(c) + "\n\n";
}

std::string ResponseWriter::sse_error(const std::string& message) const {
  json e = {{"error", {{"message", message}, {"type", "api_error"}}}};
  return "data: " + json_text(e) + "\n\n";
}

std::string ResponseWriter::sse_usage(int64_t prompt_tokens, int64_t completion_tokens) const {
  json u = {{"id", id}, {"object", is_chat ? "chat.completion.chunk" : "text_completion"}, {"created", created}, {"model", model},
            {"choices", json::array()},
            {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}}}};
  return "data: " + json_text(u) + "\n\n";
}

std::string ResponseWriter::whole(const std::string& text, const std::string& reason, const json& logprobs, int64_t prompt_tokens,
                                  int64_t completion_tokens) const {
  return whole(std::vector<ChoiceOut>{{text, reason, logprobs}}, prompt_tokens, completion_tokens);
}

std::string ResponseWriter::whole(const std::vector<ChoiceOut>& choices, int64_t prompt_tokens, int64_t completion_tokens) const {
  json usage = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
  json body = {{"id", id}, {"created", created}, {"model", model}, {"usage", usage}};
  body["object"] = is_chat ? "chat.completion" : "text_completion";
  json out = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOut& c = choices[i];
    if (is_chat)
      out.push_back({{"index", i}, {"message", {{"role", "assistant"}, {"content", c.text}}}, {"finish_reason", c.finish_reason}, {"logprobs", c.logprobs}});
    else
      out.push_back({{"index", i}, {"text", c.text}, {"finish_reason", c.finish_reason}, {"logprobs", c.logprobs}});
  }
  body["choices"] = std::move(out);
  return json_text(body);
}

}  // namespace gf
