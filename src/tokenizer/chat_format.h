// Gemma chat formats, rendered straight to token ids: the turn markers are
// control-token ids and message content is encoded with parse_special=false,
// so text a user types (even "<end_of_turn>" or "<|turn>") can never end their
// turn or forge a model turn. llama.cpp calls this parse_special; here the safe
// behaviour is the default and the only one for chat. (Non-special added
// tokens such as "\n\n" or "<unused0>" still match inside content, as they do
// when HF tokenizes a rendered template, so ids equal HF's for ordinary text.)
// Everything a caller supplies (message content, thinking, tool names,
// arguments, results, declarations) is text; only the markers the template
// itself writes are control tokens.
//
// Formats (the chat templates shipped in each model's tokenizer_config), with
// the text rendered byte for byte as jinja2 renders those templates:
//   Gemma 1/2  <bos><start_of_turn>user\n{trim}<end_of_turn>\n<start_of_turn>model\n...
//              roles alternate user/model; a system message is an error.
//              Content must be a string.
//   Gemma 3    as Gemma 1/2; a first system message is prepended, untrimmed,
//              with "\n\n" to the first user turn. Content may be a list of
//              parts: text parts trimmed, image parts <start_of_image>.
//   Gemma 1-3 templates ignore `tools` and `enable_thinking`; tool calls and
//   tool messages are refused.
//   Gemma 4    The official 31B template (../shared/fixtures/chat-templates/
//              gemma4-31b-it.jinja, checked byte-exact against the 11 jinja2
//              renderings in chat_gemma4_goldens.json):
//              <bos>[<|turn>system\n[<|think|>\n]{trim system}{<|tool>declaration:...<tool|>}<turn|>\n]
//              <|turn>user\n{trim}<turn|>\n<|turn>model\n{answer}<turn|>\n ...
//              native system role (first message "system" or "developer");
//              enable_thinking writes <|think|>; model content has its
//              <|channel>...<channel|> thinking stripped; consecutive model
//              messages share one turn; OpenAI-style `tools` become
//              declarations, assistant `tool_calls` become <|tool_call>call:NAME{...}<tool_call|>
//              followed by the results of the `role: "tool"` messages after it
//              as <|tool_response>response:NAME{...}<tool_response|>;
//              content parts (text/image/audio/video). With
//              set_empty_thought_channel(true) (the 31B/26B templates) the
//              generation prompt gets an empty "<|channel>thought\n<channel|>"
//              when thinking is off; E2B/E4B templates omit it.
//   Where a template would render nonsense or fail inside jinja2 (no
//   messages, a tool message that answers no tool call, unknown roles,
//   malformed tool calls) the conversation is refused with an error instead.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace gf {

// One call an assistant message makes (OpenAI `tool_calls[i]`).
struct ChatToolCall {
  std::optional<std::string> id = {};
  std::string name;
  // An object renders as key:value pairs (keys sorted); a string renders as is
  // (the template does not parse a JSON string); anything else renders nothing.
  nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
};

// Gemma's native form: results carried on the assistant message (`tool_responses`).
struct ChatToolResponse {
  std::string name = "unknown";
  nlohmann::ordered_json response = nullptr;
};

struct ChatMessage {
  std::string role;     // "system" (or "developer"), "user", "assistant" (or "model"), "tool"
  std::string content;  // plain text content
  // Content that is not a plain string, as JSON gives it (then `content` is
  // unused): a list of parts ({"type": "text", "text": ...}, {"type": "image"},
  // ...), null (no content), or for a tool result any JSON value.
  std::optional<nlohmann::ordered_json> content_json = {};
  std::string reasoning = {};                       // `reasoning` / `reasoning_content` of an assistant message
  std::vector<ChatToolCall> tool_calls = {};        // assistant
  std::vector<ChatToolResponse> tool_responses = {};  // assistant, Gemma-native results
  std::optional<std::string> tool_call_id = {};     // role "tool": the call it answers
  std::optional<std::string> name = {};             // role "tool": the function's name
};

// What transformers' apply_chat_template takes besides the messages.
struct ChatOptions {
  bool add_generation_prompt = true;
  bool enable_thinking = false;  // Gemma 4 only
  // OpenAI-style declarations: [{"type": "function", "function": {"name", "description", "parameters"}}]. Gemma 4 only.
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
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
  // Text only, no tokenizer (render_text works, BOS written "<bos>"; render_ids
  // is an error, stop_ids empty).
  static ChatFormat text_only(ChatStyle style);
  ChatStyle style() const { return style_; }
  // Gemma 4 31B/26B templates open the reply with an empty thought channel
  // ("<|channel>thought\n<channel|>") when thinking is off; E2B/E4B templates
  // do not. Off by default.
  void set_empty_thought_channel(bool on) { empty_thought_ = on; }
  bool empty_thought_channel() const { return empty_thought_; }

  // Full conversation, BOS first, ending with the model's turn opened when add_generation_prompt.
  Result<std::vector<int32_t>> render_ids(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  Result<std::vector<int32_t>> render_ids(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const;
  // The same as text (special tokens written out), exactly the template's output.
  Result<std::string> render_text(const std::vector<ChatMessage>& msgs, bool add_generation_prompt = true) const;
  Result<std::string> render_text(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const;
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
  Result<std::vector<Piece>> render(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const;
  Result<std::vector<Piece>> render_gemma4(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const;
  static Result<ChatFormat> make(const Tokenizer& tok, ChatStyle style);
  const Tokenizer* tok_ = nullptr;
  ChatStyle style_ = ChatStyle::Gemma;
  std::string start_, end_;
  std::vector<int32_t> stop_ids_;
  bool empty_thought_ = false;
};

}  // namespace gf
