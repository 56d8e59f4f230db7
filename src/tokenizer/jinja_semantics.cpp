#include "tokenizer/jinja_semantics.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>

namespace gf::chat_detail {
namespace {
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

}  // namespace

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

}  // namespace gf::chat_detail
