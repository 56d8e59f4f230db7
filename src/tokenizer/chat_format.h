// Gemma chat formats, rendered straight to token ids: the turn markers are
// control-token ids and message content is encoded with parse_special=false,
// so text a user types (even "<end_of_turn>" or "<|turn>") can never end their
// turn or forge a model turn. llama.cpp calls this parse_special; here the safe
// behaviour is the default and the only one for chat. (Non-special added
// tokens such as "\n\n" or "<unused0>" still match inside content, as they do
// when HF tokenizes a rendered template, so ids equal HF's for ordinary text.)
//
// Formats (the chat templates shipped in each model's tokenizer_config):
//   Gemma 1/2  <bos><start_of_turn>user\n{trim}<end_of_turn>\n<start_of_turn>model\n...
//              roles alternate user/model; a system message is an error.
//   Gemma 3    as Gemma 1/2; a first system message is prepended, untrimmed,
//              with "\n\n" to the first user turn.
//   Gemma 4    <bos>[<|turn>system\n{trim}<turn|>\n]<|turn>user\n{trim}<turn|>\n<|turn>model\n...
//              From Google's canonical Gemma 4 template (2026-07, as published
//              with the models and mirrored in ollama's test data), text only:
//              model content has <|channel>...<channel|> thinking stripped,
//              consecutive model messages share one turn; no tools, no thinking
//              switch. Not checked against a reference rendering (no fixture).
#pragma once
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace gf {

struct ChatMessage {
  std::string role;  // "system" (or "developer"), "user", "assistant" (or "model")
  std::string content;
};

enum class ChatStyle {
  Gemma,   // Gemma 1/2: no system turn
  Gemma3,  // system folded into the first user turn
  Gemma4,  // <|turn>role ... <turn|>
};

class ChatFormat {
 public:
  // The style from the tokenizer alone: Gemma 4's <|turn> tokens, else Gemma 3's
  // vocabulary (it has <start_of_image>), else Gemma 1/2.
  static Result<ChatFormat> for_tokenizer(const Tokenizer& tok);
  // As above, but the model family decides between Gemma 1/2 and Gemma 3
  // (allow_system = family >= 3) for tokenizers with <start_of_turn>.
  static Result<ChatFormat> for_tokenizer(const Tokenizer& tok, bool allow_system);
  ChatStyle style() const { return style_; }
  // Gemma 4 31B/26B templates open the reply with an empty thought channel
  // ("<|channel>thought\n<channel|>") when thinking is off; E2B/E4B templates
  // do not. Off by default.
  void set_empty_thought_channel(bool on) { empty_thought_ = on; }

  // Full conversation, BOS first, ending with the model's turn opened when add_generation_prompt.
  Result<std::vector<int32_t>> render_ids(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  // The same as text (special tokens written out), for display and tests.
  Result<std::string> render_text(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  // Tokens that end a model turn: <end_of_turn> (Gemma 1-3) or <turn|> (Gemma 4),
  // <eos>, and Gemma 4's <|tool_response> (a model hands over to a tool with it).
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  // Ids to append after a model reply that stopped at max tokens, closing its turn.
  std::vector<int32_t> close_model_turn() const;

 private:
  struct Piece {
    bool control;
    std::string text;
  };
  Result<std::vector<Piece>> render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  Result<std::vector<Piece>> render_gemma4(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  static Result<ChatFormat> make(const Tokenizer& tok, ChatStyle style);
  const Tokenizer* tok_ = nullptr;
  ChatStyle style_ = ChatStyle::Gemma;
  std::string start_, end_;
  std::vector<int32_t> stop_ids_;
  bool empty_thought_ = false;
};

}  // namespace gf
