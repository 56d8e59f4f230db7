#include "cli/reply_printer.h"

namespace gf::cli {

std::string ReplyPrinter::push(const std::string& text) {
  if (!gemma4_) {
    answer_ += text;
    return text;
  }
  return render(parser_.push(text));
}

std::string ReplyPrinter::finish() {
  if (!gemma4_) return "";
  std::string out = render(parser_.finish());
  if (in_thought_) out += terminal_ ? "\x1b[0m\n" : "\n[/thinking]\n";
  in_thought_ = false;
  return out;
}

std::string ReplyPrinter::render(Gemma4Delta&& d) {
  std::string out;
  if (!d.reasoning.empty()) {
    if (!in_thought_) out += terminal_ ? "\x1b[2m" : "[thinking]\n";
    in_thought_ = true;
    out += d.reasoning;
  }
  if ((!d.content.empty() || !d.tool_calls.empty()) && in_thought_) {
    out += terminal_ ? "\x1b[0m\n" : "\n[/thinking]\n";
    in_thought_ = false;
  }
  for (const Gemma4ToolCall& c : d.tool_calls) out += "[tool call] " + c.name + " " + c.arguments + "\n";
  answer_ += d.content;
  out += d.content;
  return out;
}

}  // namespace gf::cli
