#include "server/gemma4_output.h"

#include <algorithm>

namespace gf {
namespace {

using J = nlohmann::ordered_json;

constexpr std::string_view kQuote = "<|\"|>";
constexpr std::string_view kChannelOpen = "<|channel>", kChannelClose = "<channel|>";
constexpr std::string_view kCallOpen = "<|tool_call>", kCallClose = "<tool_call|>";
constexpr std::string_view kThoughtName = "thought\n";

// Every Gemma 4 control token that may be written out in decoded text; none reaches content.
constexpr std::string_view kMarkers[] = {
    kChannelOpen, kChannelClose, kCallOpen, kCallClose, kQuote, "<|turn>", "<turn|>", "<|think|>", "<|tool>", "<tool|>",
    "<|tool_response>", "<tool_response|>", "<|image|>", "<|audio|>", "<|video|>", "<|image>", "<image|>", "<|audio>",
    "<audio|>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>"};

// The length of the longest end of s that is a proper start of some marker (to hold back).
size_t partial_marker_tail(std::string_view s) {
  size_t best = 0;
  for (std::string_view m : kMarkers)
    for (size_t n = std::min(s.size(), m.size() - 1); n > best; --n)
      if (s.substr(s.size() - n) == m.substr(0, n)) {
        best = n;
        break;
      }
  return best;
}

// The first marker in s at or after pos: its position and which.
size_t find_marker(std::string_view s, std::string_view* which) {
  size_t best = std::string_view::npos;
  for (std::string_view m : kMarkers) {
    const size_t p = s.find(m);
    if (p < best || (p == best && p != std::string_view::npos && m.size() > which->size())) {
      best = p;
      *which = m;
    }
  }
  return best;
}

// Text with every marker removed and <|"|> written as '"' (a tool call that did not parse).
std::string plain(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    std::string_view m;
    const size_t p = find_marker(s, &m);
    if (p == std::string_view::npos) {
      out += s;
      break;
    }
    out += s.substr(0, p);
    if (m == kQuote) out += '"';
    s.remove_prefix(p + m.size());
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

struct ArgParser {
  std::string_view s;
  size_t i = 0;
  int depth = 0;

  void ws() {
    while (i < s.size() && is_space(s[i])) ++i;
  }
  bool at(std::string_view t) const { return s.substr(i, t.size()) == t; }
  // <|"|>...<|"|>
  bool quoted(std::string& out) {
    if (!at(kQuote)) return false;
    const size_t end = s.find(kQuote, i + kQuote.size());
    if (end == std::string_view::npos) return false;
    out = std::string(s.substr(i + kQuote.size(), end - i - kQuote.size()));
    i = end + kQuote.size();
    return true;
  }
  // A JSON string literal "..." (a model writing JSON style).
  bool json_string(std::string& out) {
    if (i >= s.size() || s[i] != '"') return false;
    size_t k = i + 1;
    while (k < s.size() && s[k] != '"') k += s[k] == '\\' ? 2 : 1;
    if (k >= s.size()) return false;
    J v = J::parse(s.substr(i, k + 1 - i), nullptr, false);
    if (!v.is_string()) return false;
    out = v.get<std::string>();
    i = k + 1;
    return true;
  }
  bool key(std::string& out) {
    ws();
    if (at(kQuote)) return quoted(out);
    if (i < s.size() && s[i] == '"') return json_string(out);
    const size_t start = i;
    while (i < s.size() && s[i] != ':') {
      if (s[i] == '{' || s[i] == '}' || s[i] == '[' || s[i] == ']' || s[i] == ',' || at(kQuote)) return false;
      ++i;
    }
    out = std::string(trim(s.substr(start, i - start)));
    return !out.empty() && i < s.size();
  }
  bool value(J& out) {
    ws();
    if (i >= s.size() || depth > 64) return false;
    if (at(kQuote)) {
      std::string v;
      if (!quoted(v)) return false;
      out = v;
      return true;
    }
    if (s[i] == '"') {
      std::string v;
      if (!json_string(v)) return false;
      out = v;
      return true;
    }
    if (s[i] == '{') {
      ++i;
      ++depth;
      out = J::object();
      ws();
      if (i < s.size() && s[i] == '}') return ++i, --depth, true;
      for (;;) {
        std::string k;
        if (!key(k)) return false;
        ws();
        if (i >= s.size() || s[i] != ':') return false;
        ++i;
        J v;
        if (!value(v)) return false;
        out[k] = std::move(v);
        ws();
        if (i >= s.size()) return false;
        if (s[i] == ',') {
          ++i;
          ws();
          if (i < s.size() && s[i] == '}') return ++i, --depth, true;  // a trailing comma
          continue;
        }
        if (s[i] == '}') return ++i, --depth, true;
        return false;
      }
    }
    if (s[i] == '[') {
      ++i;
      ++depth;
      out = J::array();
      ws();
      if (i < s.size() && s[i] == ']') return ++i, --depth, true;
      for (;;) {
        J v;
        if (!value(v)) return false;
        out.push_back(std::move(v));
        ws();
        if (i >= s.size()) return false;
        if (s[i] == ',') {
          ++i;
          ws();
          if (i < s.size() && s[i] == ']') return ++i, --depth, true;
          continue;
        }
        if (s[i] == ']') return ++i, --depth, true;
        return false;
      }
    }
    // A bare value, up to the next separator.
    const size_t start = i;
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && !at(kQuote) && s[i] != '{' && s[i] != '[') ++i;
    const std::string_view t = trim(s.substr(start, i - start));
    if (t.empty()) return false;
    if (t == "None" || t == "null") out = nullptr;
    else if (t == "True" || t == "true") out = true;
    else if (t == "False" || t == "false") out = false;
    else {
      J v = J::parse(t, nullptr, false);
      out = v.is_number() ? v : J(std::string(t));
    }
    return true;
  }
};

}  // namespace

void Gemma4Delta::append(Gemma4Delta&& d) {
  content += d.content;
  reasoning += d.reasoning;
  for (auto& c : d.tool_calls) tool_calls.push_back(std::move(c));
}

std::optional<nlohmann::ordered_json> gemma4_arguments_json(std::string_view text) {
  ArgParser p{text};
  p.ws();
  if (p.i >= text.size() || text[p.i] != '{') return std::nullopt;
  J out;
  if (!p.value(out)) return std::nullopt;
  p.ws();
  if (p.i != text.size()) return std::nullopt;
  return out;
}

std::optional<Gemma4ToolCall> gemma4_parse_call(std::string_view body) {
  body = trim(body);
  if (body.substr(0, 5) != "call:") return std::nullopt;
  body.remove_prefix(5);
  const size_t brace = body.find('{');
  if (brace == std::string_view::npos) return std::nullopt;
  const std::string_view name = trim(body.substr(0, brace));
  if (name.empty() || name.find_first_of(" \n\t<>\"") != std::string_view::npos) return std::nullopt;
  auto args = gemma4_arguments_json(body.substr(brace));
  if (!args) return std::nullopt;
  return Gemma4ToolCall{std::string(name), args->dump(-1, ' ', false, J::error_handler_t::replace)};
}

void Gemma4OutputParser::emit(std::string_view text, bool final, Gemma4Delta& d) {
  if (state_ != State::Thought) {
    d.content += text;
    return;
  }
  if (!strip_name_) {
    d.reasoning += text;
    return;
  }
  head_ += text;
  if (head_.size() < kThoughtName.size() && kThoughtName.substr(0, head_.size()) == head_ && !final) return;
  if (std::string_view(head_).substr(0, kThoughtName.size()) == kThoughtName) head_.erase(0, kThoughtName.size());
  else if (head_ == "thought") head_.clear();
  d.reasoning += head_;
  head_.clear();
  strip_name_ = false;
}

void Gemma4OutputParser::end_call(std::string_view body, Gemma4Delta& d) {
  if (auto call = gemma4_parse_call(body)) {
    d.tool_calls.push_back(std::move(*call));
    ++calls_;
  } else {
    d.content += plain(body);
  }
}

void Gemma4OutputParser::run(bool final, Gemma4Delta& d) {
  for (;;) {
    if (state_ == State::ToolCall) {
      const size_t close = buf_.find(kCallClose);
      if (close == std::string::npos) {
        if (!final) return;
        end_call(buf_, d);  // cut off: a call only if it is already whole
        buf_.clear();
        state_ = State::Content;
        return;
      }
      end_call(std::string_view(buf_).substr(0, close), d);
      buf_.erase(0, close + kCallClose.size());
      state_ = State::Content;
      continue;
    }
    std::string_view m;
    const size_t p = find_marker(buf_, &m);
    if (p == std::string::npos) {
      const size_t keep = final ? 0 : partial_marker_tail(buf_);
      emit(std::string_view(buf_).substr(0, buf_.size() - keep), final, d);
      buf_.erase(0, buf_.size() - keep);
      return;
    }
    emit(std::string_view(buf_).substr(0, p), false, d);
    buf_.erase(0, p + m.size());
    if (m == kChannelOpen && state_ == State::Content) {
      state_ = State::Thought;
      strip_name_ = true;
      head_.clear();
    } else if (m == kChannelClose && state_ == State::Thought) {
      emit("", true, d);
      state_ = State::Content;
    } else if (m == kCallOpen) {
      if (state_ == State::Thought) emit("", true, d);
      state_ = State::ToolCall;
    }
    // any other marker is dropped
  }
}

Gemma4Delta Gemma4OutputParser::push(std::string_view text) {
  Gemma4Delta d;
  if (finished_) return d;
  buf_ += text;
  run(false, d);
  return d;
}

Gemma4Delta Gemma4OutputParser::finish() {
  Gemma4Delta d;
  if (finished_) return d;
  run(true, d);
  if (state_ == State::Thought) emit("", true, d);
  finished_ = true;
  return d;
}

}  // namespace gf
