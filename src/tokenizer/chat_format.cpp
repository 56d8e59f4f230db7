#include "tokenizer/chat_format.h"

#include <algorithm>

#include "tokenizer/jinja_semantics.h"

namespace gf {

using namespace chat_detail;

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
