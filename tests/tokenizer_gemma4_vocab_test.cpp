// llama.cpp's vocabulary test for Gemma 4 (../shared/fixtures/tokenizers/
// gemma4_vocab_test.inp/.out: 46 texts, their ids without BOS): Gemma 4's
// ordinary vocabulary is Gemma 3's, so the Gemma 3 tokenizer must give exactly
// these ids.
#include <gtest/gtest.h>

#include <sstream>

#include "formats/gguf.h"
#include "tokenizer_fixture.h"

namespace gf {
namespace {

struct VocabTest {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
};

VocabTest read_vocab_test() {
  VocabTest vt;
  const std::string inp = test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.inp");
  const std::string out = test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.out");
  EXPECT_FALSE(inp.empty());
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t at = 0;;) {
    const size_t next = inp.find(sep, at);
    vt.texts.push_back(inp.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) break;
    at = next + sep.size();
  }
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    vt.ids.emplace_back();
    for (int32_t id; ids >> id;) vt.ids.back().push_back(id);
  }
  EXPECT_EQ(vt.texts.size(), 46u);
  EXPECT_EQ(vt.ids.size(), vt.texts.size());
  return vt;
}

int count_equal(const Tokenizer& tok, const VocabTest& vt) {
  int equal = 0;
  for (size_t i = 0; i < vt.texts.size() && i < vt.ids.size(); ++i) {
    const auto got = tok.encode(vt.texts[i], /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(got, vt.ids[i]) << "text " << i << ": \"" << vt.texts[i] << "\"";
    equal += got == vt.ids[i];
  }
  return equal;
}

TEST(TokenizerGemma4Vocab, LlamaCppVocabTestIdsFromTheGemma3Tokenizer) {
  const VocabTest vt = read_vocab_test();
  ASSERT_EQ(vt.texts.size(), 46u);
  const int equal = count_equal(test::fixture_tokenizer("gemma3"), vt);
  std::printf("[ gemma4 vocab test ] %d / %zu texts give llama.cpp's ids\n", equal, vt.texts.size());
}

// `convert --tokenizer` embeds a tokenizer.json as llama.cpp's "gemma4"
// vocabulary (tokens, merges, types); read back from the GGUF it must give
// llama.cpp's ids too, and a model of another family refuses the option.
TEST(TokenizerGemma4Vocab, ConvertEmbedsATokenizerThatReadsBackToLlamaCppIds) {
  const std::string bin = GEMFORGE_BINARY, out = test::temp_path("g4tok.gguf");
  const std::string tok = test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz";
  int rc = -1;
  test::run_command(bin + " convert " + test::hf_tiny("gemma4-moe-like") + " -o " + out + " --tokenizer " + tok + " 2>&1", &rc);
  ASSERT_EQ(rc, 0);
  auto g = GgufFile::open(out);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(*g->get_string("tokenizer.ggml.model"), "gemma4");
  auto t = Tokenizer::from_gguf(*g);
  ASSERT_TRUE(t.ok()) << t.message();
  const VocabTest vt = read_vocab_test();
  EXPECT_EQ(count_equal(*t, vt), static_cast<int>(vt.texts.size()));
  std::remove(out.c_str());
  const std::string err = test::run_command(bin + " convert " + test::hf_tiny("gemma2") + " -o " + out + " --tokenizer " + tok + " 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("--tokenizer is for Gemma 4 models"), std::string::npos) << err;
}

}  // namespace
}  // namespace gf
