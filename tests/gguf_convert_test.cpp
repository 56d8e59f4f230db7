// gemforge convert: a Hugging Face checkpoint written as a GGUF in llama.cpp's
// layout reads back to the same model: the reference logits and greedy ids
// through the GGUF, llama.cpp's tensor names and norm convention in the file,
// and Q8_0 close to the reference.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "formats/gguf.h"
#include "model/decoder.h"
#include "model/gguf_export.h"
#include "reference_fixture.h"
#include "test_util.h"

namespace gf {
namespace {

using test::max_rel_err;

class GgufConvert : public ::testing::TestWithParam<test::ReferenceCase> {};

// The reference prompt's logits and greedy ids through the model at `path`:
// within `tol` (relative, max(1, |ref|)) when tol > 0, else within max_kl nats
// of KL divergence per token (quantized weights); greedy ids equal either way.
void expect_matches_reference(const std::string& path, const test::Reference& ref, double tol, double max_kl, double* err_out) {
  auto model = load_model(path);
  ASSERT_TRUE(model.ok()) << model.message();
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*model, *be);
  ASSERT_TRUE(dec.ok()) << dec.message();
  auto cache = (*dec)->new_cache(static_cast<int64_t>(ref.input_ids.size() + ref.greedy_ids.size()));
  ASSERT_TRUE(cache.ok());
  auto logits = (*dec)->forward(ref.input_ids, **cache, true);
  ASSERT_TRUE(logits.ok()) << logits.message();
  ASSERT_EQ(logits->size(), ref.logits.size());
  if (tol > 0) {
    *err_out = max_rel_err(logits->data(), ref.logits.data(), ref.logits.size());
    EXPECT_LE(*err_out, tol) << path;
  } else {
    *err_out = 0;
    for (size_t t = 0; t < ref.input_ids.size(); ++t)
      *err_out = std::max(*err_out, test::kl_div(ref.logits.data() + t * ref.vocab, logits->data() + t * ref.vocab, ref.vocab));
    EXPECT_LE(*err_out, max_kl) << path;
  }
  std::vector<float> last(logits->end() - ref.vocab, logits->end());
  for (size_t i = 0; i < ref.greedy_ids.size(); ++i) {
    const int32_t next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    ASSERT_EQ(next, ref.greedy_ids[i]) << "greedy token " << i << " of " << path;
    auto step = (*dec)->forward({next}, **cache, false);
    ASSERT_TRUE(step.ok()) << step.message();
    last = *step;
  }
}

TEST_P(GgufConvert, RoundTripGivesTheReferenceLogits) {
  const std::string& dir = GetParam().dir;
  const test::Reference ref = test::load_reference(dir);
  ASSERT_TRUE(ref.error.empty()) << ref.error;
  auto hf = load_model(dir);
  ASSERT_TRUE(hf.ok()) << hf.message();
  const std::string out = test::temp_path(GetParam().name + ".gguf");
  ASSERT_TRUE(export_gguf(*hf, out).ok());
  double err = 0;
  expect_matches_reference(out, ref, 1e-3, 0, &err);
  std::printf("[ %s ] GGUF (source dtype): max |logit - ref| = %.3g\n", GetParam().name.c_str(), err);

  // The layout llama.cpp reads: its arch name and tensor names, norms as the model uses them.
  auto g = GgufFile::open(out);
  ASSERT_TRUE(g.ok()) << g.message();
  const std::string arch = *g->get_string("general.architecture");
  EXPECT_EQ(arch, std::vector<std::string>({"gemma", "gemma2", "gemma3", "gemma4"})[static_cast<int>(hf->spec.family)]);
  EXPECT_EQ(*g->get_int(arch + ".block_count"), hf->spec.num_layers);
  for (const char* t : {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_output.weight",
                        "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"})
    EXPECT_NE(g->find_tensor(t), nullptr) << t;
  const TensorView* norm = g->find_tensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  ASSERT_EQ(norm->dtype, DType::F32);
  EXPECT_EQ(std::vector<float>(reinterpret_cast<const float*>(norm->data), reinterpret_cast<const float*>(norm->data) + norm->numel()),
            hf->layers[0].input_norm);
  std::remove(out.c_str());

  // Q8_0 matrices: the same greedy path, logits within quantization error.
  GgufExportOptions q8;
  q8.type = "q8_0";
  ASSERT_TRUE(export_gguf(*hf, out, q8).ok());
  auto q = GgufFile::open(out);
  ASSERT_TRUE(q.ok());
  // Rows Q8_0 cannot hold (not a multiple of 32) fall back to f16, as llama.cpp's quantizer does.
  EXPECT_EQ(q->find_tensor("blk.0.attn_q.weight")->dtype, hf->spec.hidden_size % 32 ? DType::F16 : DType::Q8_0);
  expect_matches_reference(out, ref, 0, 2e-3, &err);
  std::printf("[ %s ] GGUF (q8_0): max KL to the reference = %.3g\n", GetParam().name.c_str(), err);
  std::remove(out.c_str());
}

INSTANTIATE_TEST_SUITE_P(HfReference, GgufConvert, ::testing::ValuesIn(test::reference_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(GgufConvertCli, WritesAFileAndRejectsAnUnknownType) {
  const std::string bin = GEMFORGE_BINARY, dir = test::hf_tiny("gemma2"), out = test::temp_path("cli.gguf");
  int rc = -1;
  const std::string err = test::run_command(bin + " convert " + dir + " -o " + out + " --type q3 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("unknown --type \"q3\""), std::string::npos) << err;
  test::run_command(bin + " convert " + dir + " -o " + out + " --type f16 2>&1", &rc);
  ASSERT_EQ(rc, 0);
  auto g = GgufFile::open(out);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->find_tensor("blk.1.ffn_up.weight")->dtype, DType::F16);
  EXPECT_EQ(*g->get_int("general.file_type"), 1);  // llama.cpp's MOSTLY_F16
  std::remove(out.c_str());
}

}  // namespace
}  // namespace gf
