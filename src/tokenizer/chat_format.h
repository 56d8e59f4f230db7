// Gemma chat formats, rendered straight to token ids: the turn markers are
// control-token ids and message content is encoded with parse_special=false,
// so text a user types (even "<end_of_turn>") can never end their turn or
// forge a model turn. llama.cpp calls this parse_special; here the safe
// behaviour is the default and the only one for chat.
#pragma once
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace gf {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (or "model")
  std::string content;
};

enum class ChatStyle {
  Gemma,   // Gemma 1/2: no system turn
  Gemma3,  // system folded into the first user turn
  Gemma4,  // <|turn>role ... <turn|> (unverified against a real template)
};

class ChatFormat {
 public:
  // Picks the style from the tokenizer's vocabulary (Gemma 4 turn tokens) and
  // whether a system turn is allowed (model family >= 3).
  static Result<ChatFormat> for_tokenizer(const Tokenizer& tok, bool allow_system);
  ChatStyle style() const { return style_; }

  // Full conversation, BOS first, ending with the model's turn opened when add_generation_prompt.
  Result<std::vector<int32_t>> render_ids(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  // The same as text (special tokens written out), for display and tests.
  Result<std::string> render_text(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  // Tokens that end a model turn.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  // Ids to append after a model reply that stopped at max tokens, closing its turn.
  std::vector<int32_t> close_model_turn() const;

 private:
  struct Piece {
    bool control;
    std::string text;
  };
  Result<std::vector<Piece>> render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  const Tokenizer* tok_ = nullptr;
  ChatStyle style_ = ChatStyle::Gemma;
  std::string start_, end_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace gf
