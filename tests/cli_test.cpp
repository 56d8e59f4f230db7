// The command-line forms external checks use, run as real processes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "formats/safetensors.h"
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

TEST(Cli, RunPrintsGreedyIds) {
  for (const char* fx : {"gemma2", "gemma3-4b-like"}) {
    Ref r = reference(fx);
    int rc = -1;
    std::string out = test::run_command(bin() + " run -m " + test::hf_tiny(fx) + " --prompt-ids " + join(r.input_ids, ",") +
                                            " -n 16 --temp 0 --print-ids",
                                        &rc);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(out, join(r.greedy_ids, " ") + "\n") << fx;
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
  out = test::run_command(bin() + " run -m " + test::hf_tiny("gemma4-moe-like") + " --prompt-ids 2,3 --print-ids 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("not supported yet"), std::string::npos) << out;
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
