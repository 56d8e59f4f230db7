// Gemma 4's tokenizer in GGUF, as llama.cpp writes it ("gemma4": BPE with
// merges): the real Gemma 3/4 vocabulary written by add_gemma4_tokenizer_keys,
// read back by Tokenizer::from_gguf, gives the Hugging Face ids on the shared
// corpus and llama.cpp's Gemma 4 vocab test.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_gguf.h"

namespace gf {
namespace {

TEST(TokenizerGguf, Gemma4TokenizerRoundTripsThroughGguf) {
  GgufWriter w;
  w.add_string("general.architecture", "gemma4");
  ASSERT_TRUE(add_gemma4_tokenizer_keys(test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz", "{{ bos_token }}", w).ok());
  const std::string path = test::temp_path("tok.gguf");
  ASSERT_TRUE(w.write(path).ok());
  auto g = GgufFile::open(path);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(*g->get_string("tokenizer.ggml.model"), "gemma4");
  EXPECT_EQ(*g->get_string("tokenizer.chat_template"), "{{ bos_token }}");
  auto tok = Tokenizer::from_gguf(*g);
  ASSERT_TRUE(tok.ok()) << tok.message();
  auto hf = Tokenizer::from_json_file(test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz");
  ASSERT_TRUE(hf.ok());
  EXPECT_EQ(tok->vocab_size(), hf->vocab_size());
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_TRUE(tok->is_control(*tok->token_to_id("<start_of_turn>")));

  // The shared corpus: Hugging Face's ids, with and without BOS.
  std::istringstream corpus(test::read_bytes(test::fixtures() + "/tokenizers/tok_gemma3_shared.jsonl"));
  int texts = 0, equal = 0;
  for (std::string line; std::getline(corpus, line);) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j["text"];
    const auto want = j["ids"].get<std::vector<int32_t>>();
    const auto got = tok->encode(text, /*add_bos=*/false, /*parse_special=*/true);
    ++texts;
    equal += got == want;
    EXPECT_EQ(got, want) << "text " << texts << ": " << text.substr(0, 80);
    EXPECT_EQ(tok->decode(got), j["decoded"].get<std::string>()) << "text " << texts;
  }
  EXPECT_EQ(texts, 183);
  std::printf("[ gemma4 GGUF tokenizer ] %d/%d shared texts give Hugging Face's ids\n", equal, texts);

  // llama.cpp's Gemma 4 vocab test.
  const std::string inp = test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.inp");
  std::istringstream out(test::read_bytes(test::fixtures() + "/tokenizers/gemma4_vocab_test.out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t at = 0;
  int cases = 0;
  for (std::string ids_line; std::getline(out, ids_line); ++cases) {
    const size_t next = inp.find(sep, at);
    const std::string text = inp.substr(at, next == std::string::npos ? std::string::npos : next - at);
    at = next == std::string::npos ? inp.size() : next + sep.size();
    std::vector<int32_t> want;
    std::istringstream ids(ids_line);
    for (int32_t id; ids >> id;) want.push_back(id);
    EXPECT_EQ(tok->encode(text, false, false), want) << "vocab test " << cases << ": \"" << text << "\"";
  }
  EXPECT_EQ(cases, 46);
  std::remove(path.c_str());
}

TEST(TokenizerGguf, AnUnknownTokenizerModelIsAClearError) {
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", "gpt2");
  const std::string path = test::temp_path("tok_bad.gguf");
  ASSERT_TRUE(w.write(path).ok());
  auto g = GgufFile::open(path);
  ASSERT_TRUE(g.ok());
  auto tok = Tokenizer::from_gguf(*g);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.message().find("tokenizer model \"gpt2\" is not supported"), std::string::npos) << tok.message();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace gf
