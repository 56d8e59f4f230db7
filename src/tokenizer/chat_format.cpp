#include "tokenizer/chat_format.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <set>

namespace gf {
namespace {

using J = nlohmann::ordered_json;

// ---- Jinja / Python semantics the templates rely on ----

// Python's str.isspace() characters, as UTF-8 (jinja's `trim` is str.strip()).
size_t space_len(const std::string& s, size_t pos) {
  const unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  auto at = [&](size_t i) { return pos + i < s.size() ? static_cast<unsigned char>(s[pos + i]) : 0; };
  if (c == 0xc2 && (at(1) == 0x85 || at(1) == 0xa0)) return 2;                     // U+0085, U+00A0
  if (c == 0xe1 && at(1) == 0x9a && at(2) == 0x80) return 3;                        // U+1680
  if (c == 0xe2 && at(1) == 0x80 && ((at(2) >= 0x80 && at(2) <= 0x8a) || at(2) == 0xa8 || at(2) == 0xa9 || at(2) == 0xaf))
    return 3;                                                                       // U+2000-200A, 2028, 2029, 202F
  if (c == 0xe2 && at(1) == 0x81 && at(2) == 0x9f) return 3;                        // U+205F
  if (c == 0xe3 && at(1) == 0x80 && at(2) == 0x80) return 3;                        // U+3000
  return 0;
}

std::string trim(const std::string& s) {
  size_t b = 0;
  while (b < s.size()) {
    const size_t n = space_len(s, b);
    if (!n) break;
    b += n;
  }
  // Scan forward, remembering where the last non-space character ended.
  size_t end = b;
  for (size_t i = b; i < s.size();) {
    const size_t n = space_len(s, i);
    if (n) {
      i += n;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    i = std::min(s.size(), i + len);
    end = i;
  }
  return s.substr(b, end - b);
}

// Gemma 4's strip_thinking macro: drop every "<|channel>...<channel|>" span
// (text before <|channel> in each <channel|>-separated part is kept), then trim.
std::string strip_thinking(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t close = text.find("<channel|>", pos);
    const std::string part = text.substr(pos, close == std::string::npos ? std::string::npos : close - pos);
    const size_t open = part.find("<|channel>");
    out += open == std::string::npos ? part : part.substr(0, open);
    if (close == std::string::npos) break;
    pos = close + 10;
  }
  return trim(out);
}

bool is_model_role(const std::string& r) { return r == "assistant" || r == "model"; }
bool is_system_role(const std::string& r) { return r == "system" || r == "developer"; }

std::string upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}
std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Python's repr() of a float (what jinja prints for one).
std::string py_float(double d) {
  if (d != d) return "nan";
  if (d == std::numeric_limits<double>::infinity()) return "inf";
  if (d == -std::numeric_limits<double>::infinity()) return "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);  // shortest round trip
  std::string sci(buf, r.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int decpt = exp10 + 1;  // digits d1d2... = 0.d1d2... * 10^decpt
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    out += eb;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return sign + out;
}

std::string py_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (ch == q || ch == '\\') out += std::string("\\") + ch;
    else if (ch == '\n') out += "\\n";
    else if (ch == '\r') out += "\\r";
    else if (ch == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += ch;
    }
  }
  return out + q;
}

std::string py_str(const J& v);
std::string py_repr(const J& v) { return v.is_string() ? py_repr_string(v.get<std::string>()) : py_str(v); }

// Python's str() of a JSON value as json.loads gives it.
std::string py_str(const J& v) {
  switch (v.type()) {
    case J::value_t::string: return v.get<std::string>();
    case J::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case J::value_t::null: return "None";
    case J::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case J::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case J::value_t::number_float: return py_float(v.get<double>());
    case J::value_t::array: {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + py_repr(v[i]);
      return s + "]";
    }
    case J::value_t::object: {
      std::string s = "{";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        s += (first ? "" : ", ") + py_repr_string(it.key()) + ": " + py_repr(it.value());
        first = false;
      }
      return s + "}";
    }
    default: return "";
  }
}

// value['key'] in jinja: Undefined (nullptr) unless value is a mapping holding key.
const J* get(const J& v, const char* key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}
const J* get(const J* v, const char* key) { return v ? get(*v, key) : nullptr; }

bool truthy(const J* v) {
  if (!v) return false;
  switch (v->type()) {
    case J::value_t::null: return false;
    case J::value_t::boolean: return v->get<bool>();
    case J::value_t::number_integer: return v->get<int64_t>() != 0;
    case J::value_t::number_unsigned: return v->get<uint64_t>() != 0;
    case J::value_t::number_float: return v->get<double>() != 0;
    case J::value_t::string: return !v->get_ref<const std::string&>().empty();
    case J::value_t::array:
    case J::value_t::object: return !v->empty();
    default: return false;
  }
}

// {{ value }} of something that may be Undefined.
std::string jstr(const J* v) { return v ? py_str(*v) : ""; }

// `for x in value`: list items, mapping keys, a string's characters.
Result<std::vector<J>> iterate(const J& v, const std::string& what) {
  std::vector<J> out;
  if (v.is_array()) {
    for (const auto& x : v) out.push_back(x);
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) out.push_back(it.key());
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    for (size_t i = 0; i < s.size();) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      const size_t len = std::min(s.size() - i, static_cast<size_t>(c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1));
      out.push_back(s.substr(i, len));
      i += len;
    }
  } else {
    return Err(what + " must be a list");
  }
  return out;
}

// jinja's dictsort: items sorted by key, case-insensitively, stable.
std::vector<std::pair<std::string, const J*>> dictsort(const J& obj) {
  std::vector<std::pair<std::string, const J*>> items;
  for (auto it = obj.begin(); it != obj.end(); ++it) items.emplace_back(it.key(), &it.value());
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
  return items;
}

}  // namespace

// ---- Output: control markers and text runs ----

namespace {
struct Out {
  struct P {
    bool control;
    std::string text;
  };
  std::vector<P> pieces;
  void ctl(const std::string& s) { pieces.push_back({true, s}); }
  void txt(const std::string& s) {
    if (s.empty()) return;
    if (!pieces.empty() && !pieces.back().control) pieces.back().text += s;
    else pieces.push_back({false, s});
  }
  void quoted(const std::string& s) {
    ctl("<|\"|>");
    txt(s);
    ctl("<|\"|>");
  }
};

// ---- Gemma 4 template macros ----

void format_argument(const J& a, bool escape_keys, Out& o) {
  if (a.is_string()) {
    o.quoted(a.get<std::string>());
  } else if (a.is_boolean()) {
    o.txt(a.get<bool>() ? "true" : "false");
  } else if (a.is_object()) {
    o.txt("{");
    bool first = true;
    for (const auto& [key, value] : dictsort(a)) {
      if (!first) o.txt(",");
      first = false;
      if (escape_keys) o.quoted(key);
      else o.txt(key);
      o.txt(":");
      format_argument(*value, escape_keys, o);
    }
    o.txt("}");
  } else if (a.is_array()) {
    o.txt("[");
    for (size_t i = 0; i < a.size(); ++i) {
      if (i) o.txt(",");
      format_argument(a[i], escape_keys, o);
    }
    o.txt("]");
  } else {
    o.txt(py_str(a));
  }
}

Status quoted_list(const J& list, const std::string& what, Out& o) {
  GF_ASSIGN_OR_RETURN(auto items, iterate(list, what));
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) o.txt(",");
    o.quoted(py_str(items[i]));
  }
  return Ok();
}

Status format_parameters(const J& properties, Out& o, int depth = 0) {
  if (!properties.is_object()) return Err("tool parameter \"properties\" must be an object");
  if (depth > 64) return Err("tool parameters are nested too deeply");
  static const std::set<std::string> standard = {"description", "type", "properties", "required", "nullable"};
  bool found_first = false;
  for (const auto& [key, vp] : dictsort(properties)) {
    if (standard.count(key)) continue;
    const J& value = *vp;
    if (found_first) o.txt(",");
    found_first = true;
    o.txt(key + ":{");
    bool add_comma = false;
    auto comma = [&] {
      if (add_comma) o.txt(",");
      else add_comma = true;
    };
    if (const J* d = get(value, "description"); truthy(d)) {
      o.txt("description:");
      o.quoted(jstr(d));
      add_comma = true;
    }
    const std::string type = upper(jstr(get(value, "type")));
    if (type == "STRING") {
      if (const J* e = get(value, "enum"); truthy(e)) {
        comma();
        o.txt("enum:");
        format_argument(*e, true, o);
      }
    } else if (type == "ARRAY") {
      const J* items = get(value, "items");
      if (items && items->is_object() && !items->empty()) {
        comma();
        o.txt("items:{");
        bool ff = false;
        for (const auto& [ik, iv] : dictsort(*items)) {
          if (iv->is_null()) continue;
          if (ff) o.txt(",");
          ff = true;
          if (ik == "properties") {
            o.txt("properties:{");
            if (iv->is_object()) GF_RETURN_IF_ERROR(format_parameters(*iv, o, depth + 1));
            o.txt("}");
          } else if (ik == "required") {
            o.txt("required:[");
            GF_RETURN_IF_ERROR(quoted_list(*iv, "\"required\"", o));
            o.txt("]");
          } else if (ik == "type") {
            o.txt("type:");
            if (iv->is_string()) {
              format_argument(J(upper(iv->get<std::string>())), true, o);
            } else {
              GF_ASSIGN_OR_RETURN(auto types, iterate(*iv, "\"type\""));
              J up = J::array();
              for (const auto& t : types) up.push_back(upper(py_str(t)));
              format_argument(up, true, o);
            }
          } else {
            o.txt(ik + ":");
            format_argument(*iv, true, o);
          }
        }
        o.txt("}");
      }
    }
    if (truthy(get(value, "nullable"))) {
      comma();
      o.txt("nullable:true");
    }
    if (type == "OBJECT") {
      const J* props = get(value, "properties");
      if (props && props->is_object()) {
        comma();
        o.txt("properties:{");
        GF_RETURN_IF_ERROR(format_parameters(*props, o, depth + 1));
        o.txt("}");
      } else if (value.is_object()) {
        comma();
        o.txt("properties:{");
        GF_RETURN_IF_ERROR(format_parameters(value, o, depth + 1));
        o.txt("}");
      }
      if (const J* req = get(value, "required"); truthy(req)) {
        comma();
        o.txt("required:[");
        GF_RETURN_IF_ERROR(quoted_list(*req, "\"required\"", o));
        o.txt("]");
      }
    }
    comma();
    o.txt("type:");
    o.quoted(type);
    o.txt("}");
  }
  return Ok();
}

Status format_function_declaration(const J& tool, Out& o) {
  const J* fn = get(tool, "function");
  if (!fn || !fn->is_object()) return Err("each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}");
  o.txt("declaration:" + jstr(get(fn, "name")) + "{description:");
  o.quoted(jstr(get(fn, "description")));
  const J* params = get(fn, "parameters");
  if (truthy(params)) {
    o.txt(",parameters:{");
    if (const J* props = get(params, "properties"); truthy(props)) {
      o.txt("properties:{");
      GF_RETURN_IF_ERROR(format_parameters(*props, o));
      o.txt("},");
    }
    if (const J* req = get(params, "required"); truthy(req)) {
      o.txt("required:[");
      GF_RETURN_IF_ERROR(quoted_list(*req, "\"required\"", o));
      o.txt("],");
    }
    if (const J* t = get(params, "type"); truthy(t)) {
      o.txt("type:");
      o.quoted(upper(jstr(t)));
      o.txt("}");
    }
  }
  if (fn->contains("response")) {
    const J& resp = (*fn)["response"];
    o.txt(",response:{");
    if (const J* d = get(resp, "description"); truthy(d)) {
      o.txt("description:");
      o.quoted(jstr(d));
      o.txt(",");
    }
    if (upper(jstr(get(resp, "type"))) == "OBJECT") {
      o.txt("type:");
      o.quoted("OBJECT");
      o.txt("}");
    }
  }
  o.txt("}");
  return Ok();
}

void format_tool_response_block(const std::string& name, const J& response, Out& o) {
  o.ctl("<|tool_response>");
  if (response.is_object()) {
    o.txt("response:" + name + "{");
    const auto items = dictsort(response);
    for (size_t i = 0; i < items.size(); ++i) {
      o.txt(items[i].first + ":");
      format_argument(*items[i].second, false, o);
      if (i + 1 < items.size()) o.txt(",");
    }
    o.txt("}");
  } else {
    o.txt("response:" + name + "{value:");
    format_argument(response, false, o);
    o.txt("}");
  }
  o.ctl("<tool_response|>");
}

J content_of(const ChatMessage& m) { return m.content_json ? *m.content_json : J(m.content); }

// The text of content parts [{"type": "text", "text": ...}, ...] joined (other parts skipped).
Result<std::string> joined_text_parts(const J& parts, const std::string& where) {
  std::string s;
  for (const auto& p : parts) {
    if (!p.is_object()) return Err(where + ": each content part must be an object with a \"type\"");
    const J* type = get(p, "type");
    if (type && type->is_string() && *type == "text") {
      const J* text = get(p, "text");
      if (!text || !text->is_string()) return Err(where + ": a text content part needs a string \"text\"");
      s += text->get<std::string>();
    }
  }
  return s;
}

std::string where(size_t i) { return "message " + std::to_string(i); }

}  // namespace

Result<ChatFormat> ChatFormat::make(const Tokenizer& tok, ChatStyle style) {
  ChatFormat f = text_only(style);
  f.tok_ = &tok;
  const auto s = tok.token_to_id(f.start_), e = tok.token_to_id(f.end_);
  if (!s || !e) return Err("this tokenizer has no " + f.start_ + "/" + f.end_ + " tokens: it cannot render this chat format");
  f.stop_ids_ = {*e, tok.eos_id()};
  if (style == ChatStyle::Gemma4)
    if (auto tr = tok.token_to_id("<|tool_response>")) f.stop_ids_.push_back(*tr);
  return f;
}

ChatFormat ChatFormat::text_only(ChatStyle style) {
  ChatFormat f;
  f.style_ = style;
  f.start_ = style == ChatStyle::Gemma4 ? "<|turn>" : "<start_of_turn>";
  f.end_ = style == ChatStyle::Gemma4 ? "<turn|>" : "<end_of_turn>";
  return f;
}

Result<ChatFormat> ChatFormat::for_tokenizer(const Tokenizer& tok) {
  if (tok.token_to_id("<|turn>") && tok.token_to_id("<turn|>")) return make(tok, ChatStyle::Gemma4);
  if (!tok.token_to_id("<start_of_turn>") || !tok.token_to_id("<end_of_turn>"))
    return Err("this tokenizer has no Gemma turn tokens (<start_of_turn>/<end_of_turn> or <|turn>/<turn|>): it cannot chat");
  return make(tok, tok.token_to_id("<start_of_image>") ? ChatStyle::Gemma3 : ChatStyle::Gemma);
}

Result<ChatFormat> ChatFormat::for_tokenizer(const Tokenizer& tok, bool allow_system) {
  if (tok.token_to_id("<|turn>") && tok.token_to_id("<turn|>")) return make(tok, ChatStyle::Gemma4);
  if (!tok.token_to_id("<start_of_turn>") || !tok.token_to_id("<end_of_turn>"))
    return Err("this tokenizer has no Gemma turn tokens (<start_of_turn>/<end_of_turn> or <|turn>/<turn|>): it cannot chat");
  return make(tok, allow_system ? ChatStyle::Gemma3 : ChatStyle::Gemma);
}

Result<std::vector<ChatFormat::Piece>> ChatFormat::render(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  if (style_ == ChatStyle::Gemma4) return render_gemma4(msgs, opt);
  const bool gemma3 = style_ == ChatStyle::Gemma3;
  std::vector<Piece> out;
  out.push_back({true, "<bos>"});
  size_t first = 0;
  std::string prefix;
  if (!msgs.empty() && is_system_role(msgs[0].role)) {
    if (!gemma3) return Err("System role not supported (Gemma 1 and 2 have no system turn)");
    // The Gemma 3 template does not trim the system text; of parts it takes the first one's text.
    const J c = content_of(msgs[0]);
    if (c.is_string()) {
      prefix = c.get<std::string>() + "\n\n";
    } else {
      const J* text = c.is_array() && !c.empty() ? get(c[0], "text") : nullptr;
      if (!text || !text->is_string()) return Err("the system message's content must be a string or start with a text part");
      prefix = text->get<std::string>() + "\n\n";
    }
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const bool user_turn = (i - first) % 2 == 0;
    const std::string role = is_model_role(m.role) ? "model" : m.role;
    if (is_system_role(m.role)) return Err("a system message is only allowed first");
    if (m.role == "tool" || !m.tool_calls.empty() || !m.tool_responses.empty())
      return Err("the Gemma 1-3 chat formats have no tool calls or tool results (" + where(i) + ")");
    if ((user_turn && role != "user") || (!user_turn && role != "model"))
      return Err("Conversation roles must alternate user/assistant/user/assistant/... (message " + std::to_string(i) +
                 " has role \"" + m.role + "\")");
    out.push_back({true, start_});
    out.push_back({false, role + "\n" + (i == first ? prefix : std::string())});
    const J c = content_of(m);
    if (c.is_string()) {
      out.back().text += trim(c.get<std::string>());
    } else if (!gemma3) {
      return Err("the Gemma 1/2 chat template takes string content only (" + where(i) + ")");
    } else if (c.is_array()) {
      for (const auto& item : c) {
        const J* type = get(item, "type");
        if (type && *type == "image") {
          out.push_back({true, "<start_of_image>"});
        } else if (type && *type == "text") {
          const J* text = get(item, "text");
          if (!text || !text->is_string()) return Err(where(i) + ": a text content part needs a string \"text\"");
          if (out.back().control) out.push_back({false, ""});
          out.back().text += trim(text->get<std::string>());
        }
      }
    } else {
      return Err("Invalid content type (" + where(i) + ": content must be a string or a list of parts)");
    }
    out.push_back({true, end_});
    out.push_back({false, "\n"});
  }
  if (opt.add_generation_prompt) {
    out.push_back({true, start_});
    out.push_back({false, "model\n"});
  }
  return out;
}

Result<std::vector<ChatFormat::Piece>> ChatFormat::render_gemma4(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  Out o;
  o.ctl("<bos>");
  // Roles the template knows; a tool message must answer an assistant message's tool_calls
  // (the template would drop it silently).
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string& r = msgs[i].role;
    if (!is_system_role(r) && !is_model_role(r) && r != "user" && r != "tool")
      return Err("unknown chat role \"" + r + "\" (" + where(i) + ")");
    if (r == "tool") {
      size_t j = i;
      while (j > 0 && msgs[j - 1].role == "tool") --j;
      if (j == 0 || msgs[j - 1].tool_calls.empty() || !msgs[j - 1].tool_responses.empty())
        return Err("a \"tool\" message must follow an assistant message with tool_calls (" + where(i) + ")");
    }
  }
  std::string prev_type;  // the template's ns.prev_message_type ("" = None)
  size_t first = 0;
  const bool has_tools = truthy(&opt.tools);
  if (has_tools && !opt.tools.is_array()) return Err("\"tools\" must be a list");
  const bool system_first = !msgs.empty() && is_system_role(msgs[0].role);
  if (opt.enable_thinking || has_tools || system_first) {
    o.ctl(start_);
    o.txt("system\n");
    if (opt.enable_thinking) {
      o.ctl("<|think|>");
      o.txt("\n");
      prev_type = "think";
    }
    if (system_first) {
      const J c = content_of(msgs[0]);
      if (c.is_string()) {
        o.txt(trim(c.get<std::string>()));
      } else if (c.is_array()) {
        // (jinja would print the Python list; the text parts are what is meant)
        GF_ASSIGN_OR_RETURN(auto s, joined_text_parts(c, where(0)));
        o.txt(trim(s));
      } else if (!c.is_null()) {
        return Err("the system message's content must be a string or text parts");
      }
      first = 1;
    }
    if (has_tools) {
      for (const auto& tool : opt.tools) {
        o.ctl("<|tool>");
        GF_RETURN_IF_ERROR(format_function_declaration(tool, o));
        o.ctl("<tool|>");
      }
      prev_type = "tool";
    }
    o.ctl(end_);
    o.txt("\n");
  }

  // Index (in msgs) of the last user message.
  long last_user = -1;
  for (size_t i = first; i < msgs.size(); ++i)
    if (msgs[i].role == "user") last_user = static_cast<long>(i);

  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "tool") continue;
    prev_type.clear();
    const std::string role = m.role == "assistant" ? "model" : m.role;
    // Continuation: a model message right after an assistant one (tool messages between skipped).
    std::string prev_role;
    for (size_t j = i; j > first; --j)
      if (msgs[j - 1].role != "tool") {
        prev_role = msgs[j - 1].role;
        break;
      }
    if (!(role == "model" && prev_role == "assistant")) {
      o.ctl(start_);
      o.txt(role + "\n");
    }
    if (!m.reasoning.empty() && static_cast<long>(i) > last_user && !m.tool_calls.empty()) {
      o.ctl("<|channel>");
      o.txt("thought\n" + m.reasoning + "\n");
      o.ctl("<channel|>");
    }
    if (!m.tool_calls.empty()) {
      for (const auto& tc : m.tool_calls) {
        o.ctl("<|tool_call>");
        o.txt("call:" + tc.name + "{");
        if (tc.arguments.is_object()) {
          bool ff = false;
          for (const auto& [key, value] : dictsort(tc.arguments)) {
            if (ff) o.txt(",");
            ff = true;
            o.txt(key + ":");
            format_argument(*value, false, o);
          }
        } else if (tc.arguments.is_string()) {
          o.txt(tc.arguments.get<std::string>());
        }
        o.txt("}");
        o.ctl("<tool_call|>");
      }
      prev_type = "tool_call";
    }
    bool responses_out = false;
    if (!m.tool_responses.empty()) {
      for (const auto& tr : m.tool_responses) {
        format_tool_response_block(tr.name, tr.response, o);
        responses_out = true;
        prev_type = "tool_response";
      }
    } else if (!m.tool_calls.empty()) {
      for (size_t k = i + 1; k < msgs.size() && msgs[k].role == "tool"; ++k) {
        const ChatMessage& follow = msgs[k];
        std::optional<std::string> name = follow.name;
        for (const auto& tc : m.tool_calls)
          if (tc.id == follow.tool_call_id) name = tc.name;
        if (!name)
          return Err("the tool result in " + where(k) + " has no \"name\" and its tool_call_id matches no call");
        const J body = content_of(follow);
        if (body.is_array()) {
          GF_ASSIGN_OR_RETURN(auto s, joined_text_parts(body, where(k)));
          format_tool_response_block(*name, J(s), o);
        } else if (body.is_object()) {
          // jinja iterates the mapping's keys as parts and fails unless it is empty
          if (!body.empty()) return Err(where(k) + ": a tool message's content must be a string or text parts");
          format_tool_response_block(*name, J(""), o);
        } else {
          format_tool_response_block(*name, body, o);
        }
        responses_out = true;
        prev_type = "tool_response";
      }
    }
    const J c = content_of(m);
    const bool model = role == "model";
    if (c.is_string()) {
      o.txt(model ? strip_thinking(c.get<std::string>()) : trim(c.get<std::string>()));
    } else if (c.is_array()) {
      for (const auto& item : c) {
        const J* type = get(item, "type");
        if (!type || !type->is_string()) continue;
        if (*type == "text") {
          const J* text = get(item, "text");
          if (!text || !text->is_string()) return Err(where(i) + ": a text content part needs a string \"text\"");
          o.txt(model ? strip_thinking(text->get<std::string>()) : trim(text->get<std::string>()));
        } else if (*type == "image" || *type == "audio" || *type == "video") {
          const std::string t = type->get<std::string>();
          o.ctl("<|" + t + "|>");
          prev_type = t;
        }
      }
    }
    if (prev_type == "tool_call" && !responses_out) {
      o.ctl("<|tool_response>");
    } else if (!(responses_out && !truthy(&c))) {
      o.ctl(end_);
      o.txt("\n");
    }
  }

  if (opt.add_generation_prompt && prev_type != "tool_response" && prev_type != "tool_call") {
    o.ctl(start_);
    o.txt("model\n");
    if (!opt.enable_thinking && empty_thought_) {
      o.ctl("<|channel>");
      o.txt("thought\n");
      o.ctl("<channel|>");
    }
  }
  std::vector<Piece> out;
  out.reserve(o.pieces.size());
  for (auto& p : o.pieces) out.push_back({p.control, std::move(p.text)});
  return out;
}

Result<std::vector<int32_t>> ChatFormat::render_ids(const std::vector<ChatMessage>& msgs, bool gen) const {
  ChatOptions opt;
  opt.add_generation_prompt = gen;
  return render_ids(msgs, opt);
}

Result<std::string> ChatFormat::render_text(const std::vector<ChatMessage>& msgs, bool gen) const {
  ChatOptions opt;
  opt.add_generation_prompt = gen;
  return render_text(msgs, opt);
}

Result<std::vector<int32_t>> ChatFormat::render_ids(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  if (!tok_) return Err("this chat format has no tokenizer: it renders text only");
  GF_ASSIGN_OR_RETURN(auto pieces, render(msgs, opt));
  // Adjacent text pieces are encoded together, as HF encodes the rendered string.
  std::vector<int32_t> ids;
  std::string text;
  auto flush = [&] {
    auto more = tok_->encode(text, false, /*parse_special=*/false);
    ids.insert(ids.end(), more.begin(), more.end());
    text.clear();
  };
  for (const auto& p : pieces) {
    if (!p.control) {
      text += p.text;
      continue;
    }
    flush();
    if (p.text == "<bos>") {
      ids.push_back(tok_->bos_id());
      continue;
    }
    const auto id = tok_->token_to_id(p.text);
    if (!id) return Err("this tokenizer has no " + p.text + " token");
    ids.push_back(*id);
  }
  flush();
  return ids;
}

Result<std::string> ChatFormat::render_text(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  GF_ASSIGN_OR_RETURN(auto pieces, render(msgs, opt));
  std::string s;
  for (const auto& p : pieces) s += p.text;
  // BOS as the tokenizer spells it.
  if (tok_ && !pieces.empty() && pieces[0].control && pieces[0].text == "<bos>") s.replace(0, 5, tok_->piece(tok_->bos_id()));
  return s;
}

std::vector<int32_t> ChatFormat::close_model_turn() const {
  if (!tok_) return {};
  std::vector<int32_t> ids = {*tok_->token_to_id(end_)};
  auto nl = tok_->encode("\n", false, false);
  ids.insert(ids.end(), nl.begin(), nl.end());
  return ids;
}

}  // namespace gf
