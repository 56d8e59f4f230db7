// llama.cpp's vocabulary test for Gemma 4 (../shared/fixtures/tokenizers/
// gemma4_vocab_test.inp/.out: 46 texts, their ids without BOS): Gemma 4's
// ordinary vocabulary is Gemma 3's, so the Gemma 3 tokenizer must give exactly
// these ids.
#include <gtest/gtest.h>

#include <sstream>

#include "tokenizer_fixture.h"

namespace gf {
namespace {

TEST(TokenizerGemma4Vocab, LlamaCppVocabTestIdsFromTheGemma3Tokenizer) {
  const std::string inp = test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.inp");
  const std::string out = test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.out");
  ASSERT_FALSE(inp.empty());
  std::vector<std::string> texts;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t at = 0;;) {
    const size_t next = inp.find(sep, at);
    texts.push_back(inp.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) break;
    at = next + sep.size();
  }
  std::vector<std::vector<int32_t>> want;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    want.emplace_back();
    for (int32_t id; ids >> id;) want.back().push_back(id);
  }
  ASSERT_EQ(texts.size(), 46u);
  ASSERT_EQ(want.size(), texts.size());
  const Tokenizer& tok = test::fixture_tokenizer("gemma3");
  int equal = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto got = tok.encode(texts[i], /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(got, want[i]) << "text " << i << ": \"" << texts[i] << "\"";
    equal += got == want[i];
  }
  std::printf("[ gemma4 vocab test ] %d / %zu texts give llama.cpp's ids\n", equal, texts.size());
}

}  // namespace
}  // namespace gf
