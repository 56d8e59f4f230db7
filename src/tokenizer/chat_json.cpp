#include "tokenizer/chat_json.h"

namespace gf {
namespace {

using J = nlohmann::ordered_json;

// A Python-truthy JSON value (null, false, 0, "", [], {} are not).
bool truthy(const J& v) {
  switch (v.type()) {
    case J::value_t::null: return false;
    case J::value_t::boolean: return v.get<bool>();
    case J::value_t::number_integer: return v.get<int64_t>() != 0;
    case J::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case J::value_t::number_float: return v.get<double>() != 0;
    case J::value_t::string: return !v.get_ref<const std::string&>().empty();
    default: return !v.empty();  // (nlohmann's empty() is false for every string)
  }
}

Result<std::optional<std::string>> optional_string(const J& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Err(where + "." + key + " must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<bool> flag(const J& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Err(std::string("\"") + key + "\" must be true or false");
  return it->get<bool>();
}

}  // namespace

Result<ChatMessage> chat_message_from_json(const J& m, const std::string& where) {
  if (!m.is_object()) return Err(where + " must be an object with a \"role\"");
  auto role = m.find("role");
  if (role == m.end() || !role->is_string()) return Err(where + " needs a string \"role\"");
  ChatMessage msg;
  msg.role = role->get<std::string>();
  const bool tool = msg.role == "tool";
  auto content = m.find("content");
  if (content == m.end()) {
    msg.content_json = nullptr;
  } else if (content->is_string()) {
    msg.content = content->get<std::string>();
  } else if (content->is_array() || content->is_null() || tool) {
    msg.content_json = *content;
  } else {
    return Err(where + ".content must be a string, a list of content parts, or null");
  }
  // reasoning or reasoning_content (the template takes the first that is set)
  for (const char* key : {"reasoning", "reasoning_content"}) {
    auto it = m.find(key);
    if (it == m.end() || !truthy(*it)) continue;
    if (!it->is_string()) return Err(where + "." + key + " must be a string");
    msg.reasoning = it->get<std::string>();
    break;
  }
  if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
    if (!tc->is_array()) return Err(where + ".tool_calls must be a list");
    for (size_t i = 0; i < tc->size(); ++i) {
      const J& c = (*tc)[i];
      const std::string w = where + ".tool_calls[" + std::to_string(i) + "]";
      if (!c.is_object()) return Err(w + " must be an object");
      auto fn = c.find("function");
      if (fn == c.end() || !fn->is_object()) return Err(w + " needs a \"function\" object");
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string()) return Err(w + ".function needs a string \"name\"");
      ChatToolCall call;
      GF_ASSIGN_OR_RETURN(call.id, optional_string(c, "id", w));
      call.name = name->get<std::string>();
      auto args = fn->find("arguments");
      call.arguments = args == fn->end() ? J(nullptr) : *args;
      msg.tool_calls.push_back(std::move(call));
    }
  }
  if (auto tr = m.find("tool_responses"); tr != m.end() && !tr->is_null()) {
    if (!tr->is_array()) return Err(where + ".tool_responses must be a list");
    for (size_t i = 0; i < tr->size(); ++i) {
      const J& r = (*tr)[i];
      const std::string w = where + ".tool_responses[" + std::to_string(i) + "]";
      if (!r.is_object() || !r.contains("response")) return Err(w + " must be {\"name\": ..., \"response\": ...}");
      ChatToolResponse resp;
      GF_ASSIGN_OR_RETURN(auto name, optional_string(r, "name", w));
      if (name) resp.name = *name;
      resp.response = r["response"];
      msg.tool_responses.push_back(std::move(resp));
    }
  }
  GF_ASSIGN_OR_RETURN(msg.tool_call_id, optional_string(m, "tool_call_id", where));
  GF_ASSIGN_OR_RETURN(msg.name, optional_string(m, "name", where));
  return msg;
}

Result<ChatRequest> chat_request_from_json(const J& j) {
  if (!j.is_object()) return Err("the request must be a JSON object {\"messages\": [...], ...}");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "messages" && it.key() != "tools" && it.key() != "add_generation_prompt" && it.key() != "enable_thinking")
      return Err("unknown field \"" + it.key() + "\" (expected messages, tools, add_generation_prompt, enable_thinking)");
  auto msgs = j.find("messages");
  if (msgs == j.end() || !msgs->is_array() || msgs->empty()) return Err("\"messages\" must be a non-empty list");
  ChatRequest req;
  for (size_t i = 0; i < msgs->size(); ++i) {
    GF_ASSIGN_OR_RETURN(auto m, chat_message_from_json((*msgs)[i], "messages[" + std::to_string(i) + "]"));
    req.messages.push_back(std::move(m));
  }
  if (auto tools = j.find("tools"); tools != j.end() && !tools->is_null()) {
    if (!tools->is_array()) return Err("\"tools\" must be a list");
    for (size_t i = 0; i < tools->size(); ++i) {
      const J& t = (*tools)[i];
      const J* fn = t.is_object() && t.contains("function") ? &t["function"] : nullptr;
      if (!fn || !fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string())
        return Err("tools[" + std::to_string(i) + "] must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}");
    }
    req.options.tools = *tools;
  }
  GF_ASSIGN_OR_RETURN(req.options.add_generation_prompt, flag(j, "add_generation_prompt"));
  GF_ASSIGN_OR_RETURN(req.options.enable_thinking, flag(j, "enable_thinking"));
  return req;
}

Result<ChatRequest> parse_chat_request(std::string_view text) {
  J j;
  try {
    j = J::parse(text.begin(), text.end());
  } catch (const J::parse_error& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> from "parse error" on
    if (auto p = what.find("parse error"); p != std::string::npos) what = what.substr(p);
    return Err("malformed JSON: " + what);
  }
  return chat_request_from_json(j);
}

}  // namespace gf
