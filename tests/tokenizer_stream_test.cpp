// StreamDecoder: UTF-8 never split, byte-fallback runs, stop strings across tokens.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/stream_decoder.h"
#include "tokenizer_fixture.h"

namespace gf {
namespace {

const Tokenizer& gemma3() { return test::fixture_tokenizer("gemma3"); }

struct Streamed {
  std::vector<std::string> chunks;
  std::string all;
};

Streamed stream(const Tokenizer& t, const std::vector<int32_t>& ids, std::vector<std::string> stops = {}) {
  StreamDecoder sd(t, std::move(stops));
  Streamed s;
  for (int32_t id : ids) {
    s.chunks.push_back(sd.push(id));
    s.all += s.chunks.back();
  }
  s.all += sd.finish();
  return s;
}

TEST(TokenizerStream, ByteFallbackCharacterIsHeldUntilComplete) {
  const Tokenizer& t = gemma3();
  const std::string ch = "\xF4\x8F\xBF\xBD";  // U+10FFFD: no token, four <0xNN> byte tokens
  const auto ids = t.encode(ch + "ok");
  ASSERT_GE(ids.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t.piece(ids[i]).substr(0, 3), "<0x");
  const Streamed s = stream(t, ids);
  EXPECT_EQ(s.chunks[0], "");
  EXPECT_EQ(s.chunks[1], "");
  EXPECT_EQ(s.chunks[2], "");
  EXPECT_EQ(s.chunks[3], ch);
  EXPECT_EQ(s.all, ch + "ok");
}

TEST(TokenizerStream, InvalidByteRunsBecomeReplacementCharactersLikeDecode) {
  const Tokenizer& t = gemma3();
  const int32_t e6 = *t.token_to_id("<0xE6>"), x97 = *t.token_to_id("<0x97>"), ff = *t.token_to_id("<0xFF>");
  const int32_t hello = t.encode("hello")[0];
  for (const std::vector<int32_t>& ids : std::vector<std::vector<int32_t>>{
           {e6, hello}, {e6, x97, hello}, {e6, x97}, {ff, hello}, {x97}, {hello, e6}}) {
    const Streamed s = stream(t, ids);
    EXPECT_EQ(s.all, t.decode(ids));
    for (const auto& c : s.chunks) EXPECT_TRUE(valid_utf8(c));
  }
}

std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> parts = {"a", " ", "the ", "日本語", "😀", "\xF4\x8F\xBF\xBD", "é", "e\xCC\x81", "\n", "  ",
                                                 "<b>", "\xF0\x9F\xA6\x84", "한국어", "\xE0\xA4\x95", "x"};
  std::string s;
  const int n = 1 + static_cast<int>(rng() % 20);
  for (int i = 0; i < n; ++i) s += parts[rng() % parts.size()];
  return s;
}

TEST(TokenizerStream, ChunksAreValidUtf8AndConcatenateToDecode) {
  std::mt19937 rng(3);
  for (const char* name : {"gemma", "gemma3"}) {
    const Tokenizer& t = test::fixture_tokenizer(name);
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng);
      const auto ids = t.encode(text);
      const Streamed s = stream(t, ids);
      for (const auto& c : s.chunks) ASSERT_TRUE(valid_utf8(c)) << name << ": " << text;
      ASSERT_EQ(s.all, text) << name;
      ASSERT_EQ(s.all, t.decode(ids));
    }
  }
}

TEST(TokenizerStream, StopStringSpanningTokensEndsTheStream) {
  const Tokenizer& t = gemma3();
  const auto ids = t.encode("The answer is 42.\nUser: next question");
  StreamDecoder sd(t, {"\nUser:"});
  std::string all;
  size_t fed = 0;
  for (int32_t id : ids) {
    ++fed;
    all += sd.push(id);
    if (sd.stopped()) break;
  }
  EXPECT_TRUE(sd.stopped());
  EXPECT_LT(fed, ids.size());
  EXPECT_EQ(sd.stop_string(), "\nUser:");
  EXPECT_EQ(all, "The answer is 42.");
  EXPECT_EQ(sd.finish(), "");
  EXPECT_EQ(sd.push(ids.back()), "") << "nothing after a stop";
}

TEST(TokenizerStream, EarliestStopStringWins) {
  const Tokenizer& t = gemma3();
  const Streamed s = stream(t, t.encode("alpha beta gamma"), {"gamma", "beta"});
  EXPECT_EQ(s.all, "alpha ");
  StreamDecoder sd(t, {"gamma", "beta"});
  for (int32_t id : t.encode("alpha beta gamma")) sd.push(id);
  EXPECT_EQ(sd.stop_string(), "beta");
}

TEST(TokenizerStream, StopStringInsideMultibyteTextAndHeldPrefixes) {
  const Tokenizer& t = gemma3();
  // A stop string made of byte-fallback characters.
  const std::string rare = "\xF4\x8F\xBF\xBD";
  EXPECT_EQ(stream(t, t.encode("abc" + rare + "def"), {rare}).all, "abc");
  // A possible prefix of a stop string is held, then released when it cannot match.
  StreamDecoder sd(t, {"STOPPER"});
  std::string shown;
  for (int32_t id : t.encode("ends with STOP")) shown += sd.push(id);
  EXPECT_EQ(shown, "ends with ");
  shown += sd.finish();
  EXPECT_EQ(shown, "ends with STOP");
  EXPECT_FALSE(sd.stopped());
}

TEST(TokenizerStream, ControlTokensAreSkippedByDefault) {
  const Tokenizer& t = gemma3();
  const Streamed s = stream(t, t.encode("hi<end_of_turn>", true));
  EXPECT_EQ(s.all, "hi");
  StreamDecoder raw(t, {}, /*skip_special=*/false);
  std::string all;
  for (int32_t id : t.encode("hi<end_of_turn>")) all += raw.push(id);
  EXPECT_EQ(all + raw.finish(), "hi<end_of_turn>");
}

}  // namespace
}  // namespace gf
