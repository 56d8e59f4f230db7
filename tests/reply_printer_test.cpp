// run/chat's view of a reply: Gemma 4 thinking set apart, tool calls shown,
// the answer alone kept for the conversation; other generations untouched.
#include <gtest/gtest.h>

#include "cli/reply_printer.h"

namespace gf::cli {
namespace {

// Feeds `text` in pieces of `step` bytes (markers split anywhere), returns what was printed.
std::string print_all(ReplyPrinter& p, const std::string& text, size_t step) {
  std::string out;
  for (size_t i = 0; i < text.size(); i += step) out += p.push(text.substr(i, step));
  return out + p.finish();
}

const std::string kReply = "<|channel>thought\nTwo and two make four.<channel|>The answer is 4.";

TEST(ReplyPrinter, Gemma4ThinkingIsSetApartAndLeftOutOfTheAnswer) {
  for (size_t step : {1, 3, 7, 1000}) {
    ReplyPrinter p(/*gemma4=*/true, /*terminal=*/false);
    EXPECT_EQ(print_all(p, kReply, step), "[thinking]\nTwo and two make four.\n[/thinking]\nThe answer is 4.") << step;
    EXPECT_EQ(p.answer(), "The answer is 4.");
  }
  ReplyPrinter tty(true, true);
  EXPECT_EQ(print_all(tty, kReply, 5), "\x1b[2mTwo and two make four.\x1b[0m\nThe answer is 4.");
}

TEST(ReplyPrinter, Gemma4ToolCallsAreShownNotAnswered) {
  ReplyPrinter p(true, false);
  const std::string out = print_all(p, "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2}<tool_call|>", 4);
  EXPECT_EQ(out, "[tool call] get_weather {\"city\":\"Paris\",\"days\":2}\n");
  EXPECT_EQ(p.answer(), "");
}

TEST(ReplyPrinter, UnterminatedThinkingIsClosed) {
  ReplyPrinter p(true, false);
  EXPECT_EQ(print_all(p, "<|channel>thought\nhmm", 2), "[thinking]\nhmm\n[/thinking]\n");
  EXPECT_EQ(p.answer(), "");
}

TEST(ReplyPrinter, EarlierGemmasPassThrough) {
  ReplyPrinter p(false, true);
  EXPECT_EQ(print_all(p, "<|channel>thought\nnot a marker here", 3), "<|channel>thought\nnot a marker here");
  EXPECT_EQ(p.answer(), "<|channel>thought\nnot a marker here");
}

}  // namespace
}  // namespace gf::cli
