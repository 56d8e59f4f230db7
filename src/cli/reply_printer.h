// What run and chat print of a reply. Gemma 4 replies carry thinking and tool
// calls between control tokens: the printer shows thinking set apart (dim on
// a terminal, between [thinking] lines otherwise) and tool calls as
// "[tool call] name {json}", and keeps the answer alone for the conversation.
// Other generations pass through unchanged.
#pragma once
#include <string>

#include "server/gemma4_output.h"

namespace gf::cli {

class ReplyPrinter {
 public:
  ReplyPrinter(bool gemma4, bool terminal) : gemma4_(gemma4), terminal_(terminal) {}
  // Decoded text (control tokens written out for Gemma 4) -> text to print.
  std::string push(const std::string& text);
  std::string finish();
  // The reply's answer: its content without thinking or tool calls.
  const std::string& answer() const { return answer_; }

 private:
  std::string render(Gemma4Delta&& d);
  bool gemma4_, terminal_;
  Gemma4OutputParser parser_;
  bool in_thought_ = false;
  std::string answer_;
};

}  // namespace gf::cli
