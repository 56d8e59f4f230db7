// A chat request as JSON, in the shape transformers' apply_chat_template takes:
//   {"messages": [...], "tools": [...], "add_generation_prompt": true, "enable_thinking": false}
// Messages are OpenAI-style: {"role", "content"} where content is a string, a
// list of parts ({"type": "text", "text": ...}, {"type": "image"}, ...) or null;
// assistant messages may carry "tool_calls" ([{"id", "type": "function",
// "function": {"name", "arguments"}}], arguments an object or a JSON string,
// rendered as given), "reasoning" / "reasoning_content", or Gemma's native
// "tool_responses" ([{"name", "response"}]); "tool" messages carry
// "tool_call_id" and/or "name". Other message fields are ignored, as the
// templates ignore them. Defaults as transformers: add_generation_prompt false,
// enable_thinking false, no tools. Object key order is kept (the templates
// sort keys case-insensitively and keep the given order among equal ones).
#pragma once
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/chat_format.h"

namespace gf {

struct ChatRequest {
  std::vector<ChatMessage> messages;
  ChatOptions options;
};

// The whole request; errors name the field ("messages[2].tool_calls[0]: ...") and
// malformed JSON gives the parser's position. An empty "messages" is an error
// (the templates fail on it). Unknown top-level fields are refused.
Result<ChatRequest> parse_chat_request(std::string_view json_text);
Result<ChatRequest> chat_request_from_json(const nlohmann::ordered_json& j);
// One message; `where` prefixes errors.
Result<ChatMessage> chat_message_from_json(const nlohmann::ordered_json& m, const std::string& where);

}  // namespace gf
