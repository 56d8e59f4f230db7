// Gemma 4 reply text -> the OpenAI chat message parts, incrementally.
//
// A Gemma 4 model writes its thinking as "<|channel>thought\n...<channel|>" and
// a tool call as "<|tool_call>call:NAME{key:<|"|>text<|"|>,n:3,ok:true,o:{...}}<tool_call|>"
// (the format chat_format.h renders tool calls in). Gemma4OutputParser takes the
// decoded text (control tokens written out, as Tokenizer::decode with
// skip_special=false gives them) in pieces of any size, split anywhere, and
// sorts it into content, reasoning and tool calls; no marker or other Gemma 4
// control token ever reaches content or reasoning. Pure: no tokenizer, no I/O.
//
// - Thinking: the text of a channel (less its "thought\n" name) is reasoning.
//   An unterminated channel stays reasoning.
// - Tool calls are complete when "<tool_call|>" arrives (or at finish()); one
//   whose text does not parse (or that is cut off mid-way) becomes plain
//   content, its markers removed and <|"|> written as '"'.
// - Text that could still be the start of a marker is held back until decided,
//   so concatenating every delta's content equals what one push of the whole
//   text gives.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gf {

struct Gemma4ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as text
};

struct Gemma4Delta {
  std::string content, reasoning;
  std::vector<Gemma4ToolCall> tool_calls;
  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
  void append(Gemma4Delta&& d);
};

class Gemma4OutputParser {
 public:
  Gemma4Delta push(std::string_view text);
  // End of the reply: whatever is held back is decided.
  Gemma4Delta finish();
  // Every tool call parsed so far.
  int tool_calls() const { return calls_; }

 private:
  enum class State { Content, Thought, ToolCall };
  void run(bool final, Gemma4Delta& d);
  void emit(std::string_view text, bool final, Gemma4Delta& d);
  void end_call(std::string_view body, Gemma4Delta& d);
  State state_ = State::Content;
  std::string buf_;   // text not yet decided
  std::string head_;  // the start of a thought channel, until its "thought\n" name is known
  bool strip_name_ = false;
  int calls_ = 0;
  bool finished_ = false;
};

// The argument text of a Gemma 4 tool call ("{key:<|"|>v<|"|>,n:1,...}") as JSON;
// nullopt when it is not one whole object. Bare keys become strings; bare values
// true/false/null and numbers are JSON's, any other bare value a string.
std::optional<nlohmann::ordered_json> gemma4_arguments_json(std::string_view text);
// A whole call body "call:NAME{...}" (what lies between the tool call markers).
std::optional<Gemma4ToolCall> gemma4_parse_call(std::string_view body);

}  // namespace gf
