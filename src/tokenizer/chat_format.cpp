#include "tokenizer/chat_format.h"

namespace gf {
namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

Result<ChatFormat> ChatFormat::for_tokenizer(const Tokenizer& tok, bool allow_system) {
  ChatFormat f;
  f.tok_ = &tok;
  if (tok.token_to_id("<|turn>") && tok.token_to_id("<turn|>")) {
    f.style_ = ChatStyle::Gemma4;
    f.start_ = "<|turn>";
    f.end_ = "<turn|>";
  } else if (tok.token_to_id("<start_of_turn>") && tok.token_to_id("<end_of_turn>")) {
    f.style_ = allow_system ? ChatStyle::Gemma3 : ChatStyle::Gemma;
    f.start_ = "<start_of_turn>";
    f.end_ = "<end_of_turn>";
  } else {
    return Err("this tokenizer has no Gemma turn tokens (<start_of_turn>/<end_of_turn>): it cannot chat");
  }
  f.stop_ids_ = {*tok.token_to_id(f.end_), tok.eos_id()};
  return f;
}

Result<std::vector<ChatFormat::Piece>> ChatFormat::render(const std::vector<ChatMessage>& msgs, bool gen) const {
  std::vector<Piece> out;
  out.push_back({true, std::string(tok_->piece(tok_->bos_id()))});
  size_t first = 0;
  std::string prefix;
  if (!msgs.empty() && msgs[0].role == "system") {
    if (style_ == ChatStyle::Gemma) return Err("System role not supported (Gemma 1 and 2 have no system turn)");
    if (style_ == ChatStyle::Gemma4) {
      out.push_back({true, start_});
      out.push_back({false, "system\n" + trim(msgs[0].content)});
      out.push_back({true, end_});
      out.push_back({false, "\n"});
    } else {
      prefix = msgs[0].content + "\n\n";
    }
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const bool user_turn = (i - first) % 2 == 0;
    std::string role = m.role == "assistant" ? "model" : m.role;
    if (m.role == "system") return Err("a system message is only allowed first");
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

Result<std::vector<int32_t>> ChatFormat::render_ids(const std::vector<ChatMessage>& msgs, bool gen) const {
  GF_ASSIGN_OR_RETURN(auto pieces, render(msgs, gen));
  std::vector<int32_t> ids;
  for (const auto& p : pieces) {
    if (p.control) {
      ids.push_back(*tok_->token_to_id(p.text));
    } else {
      auto more = tok_->encode(p.text, false, false);
      ids.insert(ids.end(), more.begin(), more.end());
    }
  }
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
