// The OpenAI schema apart from HTTP and the engine: request bodies of
// /v1/completions and /v1/chat/completions -> parameters and prompt ids, and
// the JSON/SSE text of answers. Pure functions of their inputs, so tests and
// the fuzzers (fuzz/openai_request_fuzz.cpp) call them without a model or a
// socket. Nothing here throws: a bad body is an ApiError, and JSON output
// never fails on invalid UTF-8 (such bytes become U+FFFD).
//
// openai_server.cpp uses ApiError, bad(), GenParams, parse_common() and
// error_json(). parse_openai_request() is the whole body parse for the fuzzer
// and tests; parse_chat_messages() and parse_prompts() are its parts, which
// the server can call instead of its own copies (the server adds the
// context-length check, which needs the engine).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/json_schema.h"
#include "runtime/request.h"
#include "runtime/sampler.h"
#include "server/gemma4_output.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace gf {

struct ApiError {
  int status;
  std::string type, message, param;
};

// A 400 invalid_request_error.
ApiError bad(const std::string& msg, const std::string& param = "");

// A parsed generation request (both endpoints).
struct GenParams {
  int max_tokens = 16;  // 0 only with echo (completions: score the prompt)
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  int top_logprobs = -1;
  bool echo = false;  // completions: the prompt's text (and log-probs) before the reply
  // openai_extras.cpp:
  int n = 1;                          // choices per prompt (they share its prefill)
  std::vector<int32_t> stop_ids;      // "stop_token_ids" (vLLM's name): end the reply, not shown
  std::shared_ptr<const JsonSchema> schema;  // "response_format": json_object or json_schema
  std::string schema_key;             // the schema's text: requests with the same one share a grammar
};

// "n", "best_of", "response_format", "logit_bias", "stop_token_ids" (called by parse_common).
std::optional<ApiError> parse_extras(const nlohmann::json& j, bool chat, GenParams& p);
// The token ids those fields name exist in the vocabulary (called by parse_openai_request).
std::optional<ApiError> check_token_ids(const GenParams& p, const Tokenizer& tok);

// What a request that leaves a sampling field out gets (OpenAI's defaults
// unless `serve` was given other ones).
struct RequestDefaults {
  SamplingParams sampling = openai_sampling();
  std::optional<uint64_t> seed;  // unset: a random seed per request
  std::vector<std::string> stop;  // used when the request gives no "stop"
  static SamplingParams openai_sampling() {
    SamplingParams s;
    s.temperature = 1.0f;
    s.top_k = 0;
    s.top_p = 1.0f;
    s.penalty_last_n = -1;
    return s;
  }
};

// Validates the fields shared by both endpoints; unknown fields (not common,
// not in `extra`) are an error, as the strict OpenAI servers do, so typos do
// not silently change behaviour.
std::optional<ApiError> parse_common(const nlohmann::json& j, bool chat, GenParams& p, const std::set<std::string>& extra,
                                     const RequestDefaults& defaults = {});

// "messages" -> the chat format's prompt ids (roles, string or text-part content).
// Gemma 4 (ChatStyle::Gemma4) takes the whole OpenAI chat shape: "tools", assistant
// "tool_calls" (arguments a JSON object or its text), "role": "tool" results,
// "reasoning_content", "chat_template_kwargs": {"enable_thinking": bool} and
// "reasoning_effort" (anything but "none" thinks); other formats refuse them.
std::optional<ApiError> parse_chat_messages(const nlohmann::json& j, const Tokenizer& tok, const ChatFormat* chat,
                                            std::vector<int32_t>& ids);
// The fields only chat requests have, besides "messages" (parse_common's `extra`).
const std::set<std::string>& chat_request_fields();

// One prompt of /v1/completions: its ids and the text echo shows.
struct PromptIn {
  std::vector<int32_t> ids;
  std::string echo_text;
};
// "prompt": a string, token ids, or a batch of up to 64 of either (each its own choice).
std::optional<ApiError> parse_prompts(const nlohmann::json& j, const Tokenizer& tok, std::vector<PromptIn>& out);

struct OpenAiRequest {
  GenParams params;
  std::vector<PromptIn> prompts;        // one for chat
  std::vector<int32_t> extra_stop_ids;  // chat: the format's turn ends, besides the model's EOS ids
  // Gemma 4 chat: the reply goes through Gemma4OutputParser (reasoning_content, tool_calls).
  bool gemma4_output = false;
  std::string model;  // the body's "model" (picks a LoRA adapter; empty if absent)
};
// The whole body (is_chat: /v1/chat/completions; chat null: the model has no chat format).
std::variant<OpenAiRequest, ApiError> parse_openai_request(const std::string& body, bool is_chat, const Tokenizer& tok,
                                                           const ChatFormat* chat, const RequestDefaults& defaults = {});

// JSON text; invalid UTF-8 in strings or keys becomes U+FFFD instead of throwing.
std::string json_text(const nlohmann::json& j);
// {"error": {...}} for an ApiError.
std::string error_json(const ApiError& e);

// The answer's JSON for one request, in the shapes the server writes: whole
// responses and SSE events ("data: {...}\n\n").
// A token as OpenAI names it in log-probs: its text, or "bytes:\xNN..." when its
// bytes are not UTF-8 on their own (a byte-fallback token), so that distinct
// tokens keep distinct names.
std::string token_text(const Tokenizer& tok, int32_t id);

// OpenAI's finish_reason for the engine's: "stop", "length" or "error"; a
// cancelled reply (a stop string matched, or the client left) says "stop", and
// one that called tools and then stopped says "tool_calls".
const char* openai_finish_reason(FinishReason r, bool called_tools);

// One choice of a whole response.
struct ChoiceOut {
  std::string text, finish_reason;
  nlohmann::json logprobs;  // null: none
  std::string reasoning = {};                // chat: message.reasoning_content (left out when empty)
  nlohmann::json tool_calls = nullptr;       // chat: message.tool_calls (an array, left out when null or empty)
};

// Parsed tool calls as OpenAI writes them: [{"id": "call_...", "type": "function",
// "function": {"name", "arguments"}}], with "index" (first_index on) in stream deltas.
nlohmann::json tool_calls_json(const std::vector<Gemma4ToolCall>& calls, bool streaming, int first_index = 0);

struct ResponseWriter {
  const Tokenizer& tok;
  std::string id;
  int64_t created;
  std::string model;
  bool is_chat;
  int index = 0;  // the choice its chunks are for (n > 1)

  ResponseWriter for_choice(int i) const {
    ResponseWriter c = *this;
    c.index = i;
    return c;
  }

  // One token's logprobs (chat: {"content": [..]}; completions: one entry of each list, with
  // "text_offset" when text_offset >= 0). A NaN logprob (an echoed prompt's first token) is null.
  nlohmann::json logprobs(int32_t token, float logprob, const std::vector<std::pair<int32_t, float>>& top,
                          int64_t text_offset = -1) const;
  std::string sse_role() const;
  std::string sse_delta(const std::string& text, const nlohmann::json& finish_reason, const nlohmann::json& logprobs) const;
  // A chat chunk with any of content, reasoning_content and tool_calls (each left out when empty).
  std::string sse_chat_delta(const std::string& content, const std::string& reasoning, const nlohmann::json& tool_calls,
                             const nlohmann::json& finish_reason, const nlohmann::json& logprobs) const;
  std::string sse_error(const std::string& message) const;
  std::string sse_usage(int64_t prompt_tokens, int64_t completion_tokens) const;
  static std::string sse_done() { return "data: [DONE]\n\n"; }
  std::string whole(const std::string& text, const std::string& finish_reason, const nlohmann::json& logprobs,
                    int64_t prompt_tokens, int64_t completion_tokens) const;
  // Several choices (a batch of prompts), indexed in order; usage is the sum.
  std::string whole(const std::vector<ChoiceOut>& choices, int64_t prompt_tokens, int64_t completion_tokens) const;
};

}  // namespace gf
