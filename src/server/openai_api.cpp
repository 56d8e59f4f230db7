#include "server/openai_api.h"

#include "tokenizer/chat_json.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string_view>
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

std::optional<ApiError> parse_common(const json& j, bool chat, GenParams& p, const std::set<std::string>& extra,
                                     const RequestDefaults& defaults) {
  static const std::set<std::string> common = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
                                                "min_p", "stop", "seed", "n", "presence_penalty", "frequency_penalty",
                                                "repetition_penalty", "stream", "stream_options", "logprobs", "top_logprobs", "user",
                                                "response_format", "logit_bias", "stop_token_ids"};
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
  p.sampling = defaults.sampling;
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
  double seed = defaults.seed ? static_cast<double>(static_cast<int64_t>(*defaults.seed)) : static_cast<double>(std::random_device{}());
  if (auto e = num("seed", -9.2e18, 9.2e18, seed)) return e;
  p.sampling.seed = static_cast<uint64_t>(static_cast<int64_t>(seed));
  if (auto e = parse_extras(j, chat, p)) return e;
  if (!j.contains("stop") || j["stop"].is_null()) p.stop = defaults.stop;
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

namespace {

using OJ = nlohmann::ordered_json;

// Text of a content value: a string or a list of text parts.
std::optional<ApiError> text_content(const OJ& c, std::string& out) {
  if (c.is_string()) {
    out = c.get<std::string>();
    return std::nullopt;
  }
  if (!c.is_array()) return bad("message content must be a string or text parts", "messages");
  out.clear();
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") || !part["text"].is_string())
      return bad("only text content parts are supported", "messages");
    out += part["text"].get<std::string>();
  }
  return std::nullopt;
}

// Gemma 4: the OpenAI chat shape -> ChatMessages and ChatOptions (tools, thinking).
std::optional<ApiError> gemma4_messages(const OJ& j, std::vector<ChatMessage>& msgs, ChatOptions& opt) {
  static const std::set<std::string> fields = {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content", "reasoning"};
  const OJ& all = j["messages"];
  for (size_t i = 0; i < all.size(); ++i) {
    const OJ& m = all[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return bad(where + " needs a string \"role\"", "messages");
    for (auto it = m.begin(); it != m.end(); ++it)
      if (!fields.count(it.key()))
        return bad("unsupported message field \"" + it.key() + "\" (" + where + ")", "messages");
    const std::string role = m["role"];
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" && role != "model" && role != "tool")
      return bad("unknown role \"" + role + "\"", "messages");
    const bool model = role == "assistant" || role == "model";
    const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (has_calls && !model) return bad(where + ": only assistant messages have \"tool_calls\"", "messages");
    const bool no_content = !m.contains("content") || m["content"].is_null();
    if (no_content && !(model && has_calls)) return bad(where + " needs \"content\"", "messages");
    OJ copy = m;
    if (!no_content) {
      std::string text;
      if (auto e = text_content(m["content"], text)) return e;
      copy["content"] = text;
    }
    if (has_calls) {
      if (!m["tool_calls"].is_array()) return bad(where + ".tool_calls must be a list", "messages");
      for (size_t k = 0; k < m["tool_calls"].size(); ++k) {
        OJ& c = copy["tool_calls"][k];
        const std::string w = where + ".tool_calls[" + std::to_string(k) + "]";
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
          return bad(w + " must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", "messages");
        if (c.contains("type") && c["type"] != "function") return bad(w + ".type must be \"function\"", "messages");
        OJ& fn = c["function"];
        if (fn.contains("arguments") && fn["arguments"].is_string()) {
          // OpenAI sends the arguments as JSON text; the template renders an object.
          OJ args = OJ::parse(fn["arguments"].get<std::string>(), nullptr, false);
          if (!args.is_object()) return bad(w + ".function.arguments must be a JSON object", "messages");
          fn["arguments"] = std::move(args);
        } else if (fn.contains("arguments") && !fn["arguments"].is_object() && !fn["arguments"].is_null()) {
          return bad(w + ".function.arguments must be a JSON object", "messages");
        }
      }
    }
    auto msg = chat_message_from_json(copy, where);
    if (!msg.ok()) return bad(msg.message(), "messages");
    msgs.push_back(std::move(msg).value());
  }
  if (j.contains("tools") && !j["tools"].is_null()) {
    const OJ& tools = j["tools"];
    if (!tools.is_array()) return bad("\"tools\" must be a list", "tools");
    for (const auto& t : tools) {
      const OJ* fn = t.is_object() && t.contains("function") ? &t["function"] : nullptr;
      if (!fn || !fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string() ||
          (t.contains("type") && t["type"] != "function"))
        return bad("each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}", "tools");
    }
    opt.tools = tools;
  }
  if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
    const OJ& tc = j["tool_choice"];
    if (tc == "none") opt.tools = OJ::array();
    else if (tc != "auto") return bad("\"tool_choice\" must be \"auto\" or \"none\"", "tool_choice");
  }
  if (j.contains("reasoning_effort") && !j["reasoning_effort"].is_null()) {
    if (!j["reasoning_effort"].is_string()) return bad("\"reasoning_effort\" must be a string", "reasoning_effort");
    opt.enable_thinking = j["reasoning_effort"] != "none";
  }
  if (j.contains("chat_template_kwargs") && !j["chat_template_kwargs"].is_null()) {
    const OJ& kw = j["chat_template_kwargs"];
    if (!kw.is_object()) return bad("\"chat_template_kwargs\" must be an object", "chat_template_kwargs");
    for (auto it = kw.begin(); it != kw.end(); ++it) {
      if (it.key() != "enable_thinking")
        return bad("unsupported chat_template_kwargs key \"" + it.key() + "\" (only enable_thinking)", "chat_template_kwargs");
      if (!it.value().is_boolean()) return bad("\"chat_template_kwargs.enable_thinking\" must be true or false", "chat_template_kwargs");
      opt.enable_thinking = it.value().get<bool>();
    }
  }
  return std::nullopt;
}

// The deepest nesting of arrays and objects in JSON text (the renderer recurses into tools and arguments).
int json_depth(std::string_view text) {
  int depth = 0, most = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      most = std::max(most, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return most;
}

std::optional<ApiError> chat_ids(const OJ& oj, const json& j, const ChatFormat* chat, std::vector<int32_t>& ids) {
  if (!chat) return bad("this model has no chat format; use /v1/completions");
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    return bad("\"messages\" must be a non-empty array", "messages");
  if (chat->style() == ChatStyle::Gemma4) {
    std::vector<ChatMessage> msgs;
    ChatOptions opt;
    if (auto e = gemma4_messages(oj, msgs, opt)) return e;
    auto r = chat->render_ids(msgs, opt);
    if (!r.ok()) return bad(r.message(), "messages");
    ids = *r;
    return std::nullopt;
  }
  for (const char* k : {"tools", "tool_choice", "chat_template_kwargs", "reasoning_effort"})
    if (j.contains(k) && !j[k].is_null()) return bad(std::string("\"") + k + "\" needs a Gemma 4 model (its chat format has tools and thinking)", k);
  std::vector<ChatMessage> msgs;
  for (const auto& m : j["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      return bad("each message needs a string \"role\" and \"content\"", "messages");
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.key() != "role" && it.key() != "content")
        return bad("unsupported message field \"" + it.key() + "\" (only role and content)", "messages");
    std::string content;
    if (auto e = text_content(OJ::parse(m["content"].dump(-1, ' ', false, json::error_handler_t::replace)), content)) return e;
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

}  // namespace

const std::set<std::string>& chat_request_fields() {
  static const std::set<std::string> f = {"messages", "tools", "tool_choice", "chat_template_kwargs", "reasoning_effort"};
  return f;
}

std::optional<ApiError> parse_chat_messages(const json& j, const Tokenizer&, const ChatFormat* chat, std::vector<int32_t>& ids) {
  const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (chat && chat->style() == ChatStyle::Gemma4 && json_depth(text) > 64) return bad("the request nests objects and arrays more than 64 deep");
  return chat_ids(OJ::parse(text), j, chat, ids);
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
                                                           const ChatFormat* chat, const RequestDefaults& defaults) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return bad("the body is not valid JSON");
  if (!j.is_object()) return bad("the body must be a JSON object");
  OpenAiRequest r;
  if (j.contains("model") && j["model"].is_string()) r.model = j["model"].get<std::string>();
  if (auto e = parse_common(j, is_chat, r.params, is_chat ? chat_request_fields() : std::set<std::string>{"prompt", "echo", "suffix", "best_of"},
                              defaults))
    return *e;
  if (is_chat) {
    r.prompts.emplace_back();
    // Gemma 4 keeps the body's key order (the template sorts keys case-insensitively, stably).
    const bool g4 = chat && chat->style() == ChatStyle::Gemma4;
    if (g4 && json_depth(body) > 64) return bad("the request nests objects and arrays more than 64 deep");
    const nlohmann::ordered_json oj = g4 ? nlohmann::ordered_json::parse(body, nullptr, false) : nlohmann::ordered_json();
    if (auto e = g4 ? chat_ids(oj, j, chat, r.prompts.back().ids) : parse_chat_messages(j, tok, chat, r.prompts.back().ids)) return *e;
    r.extra_stop_ids = chat->stop_ids();
    r.gemma4_output = g4;
  } else if (auto e = parse_prompts(j, tok, r.prompts)) {
    return *e;
  }
  if (r.params.stream && r.prompts.size() > 1) return bad("\"stream\" takes one prompt per request", "prompt");
  if (auto e = check_token_ids(r.params, tok)) return *e;
  return r;
}

// Token bytes are not always UTF-8 (a byte-fallback token is one byte of a
// character; GGUF pieces may be anything): plain dump() throws on them.
std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const char* openai_finish_reason(FinishReason r, bool called_tools) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Error: return "error";
    case FinishReason::None:  // (not finished: not asked)
    case FinishReason::Stop:
    case FinishReason::Cancelled: break;
  }
  return called_tools ? "tool_calls" : "stop";
}

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
            {"choices", {{{"index", index}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}}}};
  return "data: " + json_text(c) + "\n\n";
}

std::string ResponseWriter::sse_delta(const std::string& text, const json& finish, const json& logprobs) const {
  json c = {{"id", id}, {"created", created}, {"model", model}};
  if (is_chat) {
    c["object"] = "chat.completion.chunk";
    json delta = json::object();
    if (!text.empty()) delta["content"] = text;
    c["choices"] = {{{"index", index}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", logprobs}}};
  } else {
    c["object"] = "text_completion";
    c["choices"] = {{{"index", index}, {"text", text}, {"finish_reason", finish}, {"logprobs", logprobs}}};
  }
  return "data: " + json_text(c) + "\n\n";
}

json tool_calls_json(const std::vector<Gemma4ToolCall>& calls, bool streaming, int first_index) {
  static std::atomic<uint64_t> counter{1};
  static const uint64_t salt = std::random_device{}();
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "call_%016llx", static_cast<unsigned long long>((salt * 0x9E3779B97F4A7C15ull) ^ (counter.fetch_add(1) * 0xBF58476D1CE4E5B9ull)));
    json c = {{"id", id}, {"type", "function"}, {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (streaming) c["index"] = first_index + static_cast<int>(i);
    out.push_back(std::move(c));
  }
  return out;
}

std::string ResponseWriter::sse_chat_delta(const std::string& content, const std::string& reasoning, const json& tool_calls,
                                           const json& finish, const json& logprobs) const {
  json delta = json::object();
  if (!content.empty()) delta["content"] = content;
  if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
  if (tool_calls.is_array() && !tool_calls.empty()) delta["tool_calls"] = tool_calls;
  json c = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
            {"choices", {{{"index", index}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", logprobs}}}}};
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
    if (is_chat) {
      const bool calls = c.tool_calls.is_array() && !c.tool_calls.empty();
      json message = {{"role", "assistant"}, {"content", calls && c.text.empty() ? json(nullptr) : json(c.text)}};
      if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
      if (calls) message["tool_calls"] = c.tool_calls;
      out.push_back({{"index", i}, {"message", std::move(message)}, {"finish_reason", c.finish_reason}, {"logprobs", c.logprobs}});
    }
    else
      out.push_back({{"index", i}, {"text", c.text}, {"finish_reason", c.finish_reason}, {"logprobs", c.logprobs}});
  }
  body["choices"] = std::move(out);
  return json_text(body);
}

}  // namespace gf
