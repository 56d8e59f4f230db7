#include "tokenizer/chat_format.h"

namespace gf {
namespace {

// Jinja's `trim`: Python str.strip() of whitespace.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
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

}  // namespace

Result<ChatFormat> ChatFormat::make(const Tokenizer& tok, ChatStyle style) {
  ChatFormat f;
  f.tok_ = &tok;
  f.style_ = style;
  f.start_ = style == ChatStyle::Gemma4 ? "<|turn>" : "<start_of_turn>";
  f.end_ = style == ChatStyle::Gemma4 ? "<turn|>" : "<end_of_turn>";
  const auto s = tok.token_to_id(f.start_), e = tok.token_to_id(f.end_);
  if (!s || !e) return Err("this tokenizer has no " + f.start_ + "/" + f.end_ + " tokens: it cannot render this chat format");
  f.stop_ids_ = {*e, tok.eos_id()};
  if (style == ChatStyle::Gemma4)
    if (auto tr = tok.token_to_id("<|tool_response>")) f.stop_ids_.push_back(*tr);
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

Result<std::vector<ChatFormat::Piece>> ChatFormat::render(const std::vector<ChatMessage>& msgs, bool gen) const {
  if (style_ == ChatStyle::Gemma4) return render_gemma4(msgs, gen);
  std::vector<Piece> out;
  out.push_back({true, std::string(tok_->piece(tok_->bos_id()))});
  size_t first = 0;
  std::string prefix;
  if (!msgs.empty() && is_system_role(msgs[0].role)) {
    if (style_ == ChatStyle::Gemma) return Err("System role not supported (Gemma 1 and 2 have no system turn)");
    prefix = msgs[0].content + "\n\n";  // the Gemma 3 template does not trim the system text
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const bool user_turn = (i - first) % 2 == 0;
    const std::string role = is_model_role(m.role) ? "model" : m.role;
    if (is_system_role(m.role)) return Err("a system message is only allowed first");
    if ((user_turn && role != "user") || (!user_turn && role != "model"))
      return Err("Conversation roles must alternate user/assistant/user/assistant/... (message " + std::to_string(i) +
                 " has role \"" + m.role + "\")");
    out.push_back({true, start_});
    out.push_back({false, role + "\n" + (i == first ? prefix : std::string()) + trim(m.content)});
    out.push_back({true, end_});
    out.push_back({false, "\n"});
  }
  if (gen) {
    out.push_back({true, start_});
    out.push_back({false, "model\n"});
  }
  return out;
}

Result<std::vector<ChatFormat::Piece>> ChatFormat::render_gemma4(const std::vector<ChatMessage>& msgs, bool gen) const {
  std::vector<Piece> out;
  out.push_back({true, std::string(tok_->piece(tok_->bos_id()))});
  size_t first = 0;
  if (!msgs.empty() && is_system_role(msgs[0].role)) {
    out.push_back({true, start_});
    out.push_back({false, "system\n" + trim(msgs[0].content)});
    out.push_back({true, end_});
    out.push_back({false, "\n"});
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "tool") return Err("tool messages are not supported by the Gemma 4 chat format here (message " + std::to_string(i) + ")");
    const bool model = is_model_role(m.role);
    const std::string role = model ? "model" : is_system_role(m.role) ? "system" : m.role;
    if (role != "user" && role != "model" && role != "system")
      return Err("unknown chat role \"" + m.role + "\" (message " + std::to_string(i) + ")");
    // Consecutive model messages continue one model turn (the template's continue_same_model_turn).
    const bool continues = model && i > first && is_model_role(msgs[i - 1].role);
    const bool continued = model && i + 1 < msgs.size() && is_model_role(msgs[i + 1].role);
    if (!continues) {
      out.push_back({true, start_});
      out.push_back({false, role + "\n"});
    }
    out.push_back({false, model ? strip_thinking(m.content) : trim(m.content)});
    if (!continued) {
      out.push_back({true, end_});
      out.push_back({false, "\n"});
    }
  }
  if (gen) {
    out.push_back({true, start_});
    out.push_back({false, "model\n"});
    if (empty_thought_) {
      out.push_back({true, "<|channel>"});
      out.push_back({false, "thought\n"});
      out.push_back({true, "<channel|>"});
    }
  }
  return out;
}

Result<std::vector<int32_t>> ChatFormat::render_ids(const std::vector<ChatMessage>& msgs, bool gen) const {
  GF_ASSIGN_OR_RETURN(auto pieces, render(msgs, gen));
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
    const auto id = tok_->token_to_id(p.text);
    if (!id) return Err("this tokenizer has no " + p.text + " token");
    ids.push_back(*id);
  }
  flush();
  return ids;
}

Result<std::string> ChatFormat::render_text(const std::vector<ChatMessage>& msgs, bool gen) const {
  GF_ASSIGN_OR_RETURN(auto pieces, render(msgs, gen));
  std::string s;
  for (const auto& p : pieces) s += p.text;
  return s;
}

std::vector<int32_t> ChatFormat::close_model_turn() const {
  std::vector<int32_t> ids = {*tok_->token_to_id(end_)};
  auto nl = tok_->encode("\n", false, false);
  ids.insert(ids.end(), nl.begin(), nl.end());
  return ids;
}

}  // namespace gf
