// The Jinja / Python semantics the official chat templates rely on (str.strip,
// repr, truthiness, dictsort, ...), and the message helpers both renderers
// share. Internal to src/tokenizer: chat_format.cpp (Gemma 1-3) and
// gemma4_template.cpp include it.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "tokenizer/chat_format.h"

namespace gf::chat_detail {

using J = nlohmann::ordered_json;

// jinja's `trim` (Python's str.strip(): every Unicode space).
std::string trim(const std::string& s);
// Gemma 4's strip_thinking macro.
std::string strip_thinking(const std::string& text);
bool is_model_role(const std::string& r);
bool is_system_role(const std::string& r);
std::string upper(std::string s);
std::string lower(std::string s);
// Python's repr() of a float, of a string, of any value; str() of any value.
std::string py_float(double d);
std::string py_repr_string(const std::string& s);
std::string py_repr(const J& v);
std::string py_str(const J& v);
// value['key']: null (Undefined) unless value is a mapping holding key.
const J* get(const J& v, const char* key);
const J* get(const J* v, const char* key);
bool truthy(const J* v);
// {{ value }} of something that may be Undefined.
std::string jstr(const J* v);
// `for x in value`: list items, mapping keys, a string's characters.
Result<std::vector<J>> iterate(const J& v, const std::string& what);
// jinja's dictsort: items sorted by key, case-insensitively, stable.
std::vector<std::pair<std::string, const J*>> dictsort(const J& obj);

// A message's content as the template sees it (string or parts).
J content_of(const ChatMessage& m);
// The text of content parts [{"type": "text", "text": ...}, ...] joined (other parts skipped).
Result<std::string> joined_text_parts(const J& parts, const std::string& where);
// "message i", for errors.
std::string where(size_t i);

}  // namespace gf::chat_detail
