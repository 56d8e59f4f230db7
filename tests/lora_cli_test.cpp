// Adapters at inference: `score --lora` (unmerged, through the decoder) gives
// PEFT's logits for a PEFT-saved adapter; `merge` writes a folder whose plain
// `score` equals `score --lora`, and a GGUF that agrees with it.
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/safetensors.h"
#include "reference_fixture.h"
#include "test_util.h"

namespace gf {
namespace {

const std::string kRefDir = std::string(GEMFORGE_SOURCE_DIR) + "/tests/lora_references/lora-gemma3-1b-like";

std::vector<float> tensor(const std::string& path, const std::string& name) {
  auto f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.ok()) << path << ": " << f.message();
  return f.ok() ? test::read_tensor<float>(*f, name) : std::vector<float>{};
}

// `gemforge score ARGS --ids IDS` -> its logits.
std::vector<float> score(const std::string& args, const std::string& ids) {
  const std::string out = test::temp_path("lora_score.safetensors");
  int rc = -1;
  const std::string log = test::run_command(std::string(GEMFORGE_BINARY) + " score " + args + " --ids " + ids + " --logits-out " + out + " 2>&1", &rc);
  EXPECT_EQ(rc, 0) << log;
  std::vector<float> l = tensor(out, "logits");
  std::remove(out.c_str());
  return l;
}

TEST(LoraCli, ScoreWithAPeftAdapterGivesPeftsLogitsAndMergeAgrees) {
  auto ref = SafetensorsFile::open(kRefDir + "/lora_reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.message();
  const std::vector<int32_t> input = test::read_tensor<int32_t>(*ref, "input_ids");
  const std::vector<float> peft = test::read_tensor<float>(*ref, "logits");
  std::string ids;
  for (int32_t id : input) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string base = test::hf_tiny("gemma3-1b-like");

  const std::vector<float> plain = score("-m " + base, ids);
  const std::vector<float> adapted = score("-m " + base + " --lora " + kRefDir + "/adapter", ids);
  ASSERT_EQ(adapted.size(), peft.size());
  const double vs_peft = test::max_rel_err(adapted.data(), peft.data(), peft.size());
  std::printf("[ score --lora ] max |logit - PEFT| = %.3g (unadapted: %.3g)\n", vs_peft,
              test::max_rel_err(plain.data(), peft.data(), peft.size()));
  EXPECT_LE(vs_peft, 1e-3);
  EXPECT_GT(test::max_rel_err(plain.data(), peft.data(), peft.size()), 10 * vs_peft);  // the adapter matters

  // merge (float32 so nothing rounds): the folder scores as the unmerged adapter does.
  const std::string merged = test::temp_path("merged"), gguf = test::temp_path("merged.gguf");
  int rc = -1;
  const std::string log = test::run_command(std::string(GEMFORGE_BINARY) + " merge -m " + base + " --lora " + kRefDir +
                                                "/adapter --dtype float32 -o " + merged + " --gguf " + gguf + " --gguf-type f32 2>&1",
                                            &rc);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(std::filesystem::exists(merged + "/config.json"));
  const std::vector<float> from_folder = score("-m " + merged, ids);
  ASSERT_EQ(from_folder.size(), adapted.size());
  const double vs_unmerged = test::max_rel_err(from_folder.data(), adapted.data(), adapted.size());
  std::printf("[ merge ] merged folder vs --lora: %.3g\n", vs_unmerged);
  EXPECT_LE(vs_unmerged, 1e-3);  // bf16 weights and float32 merged ones go through different kernels
  const std::vector<float> from_gguf = score("-m " + gguf, ids);
  ASSERT_EQ(from_gguf.size(), adapted.size());
  const double gguf_err = test::max_rel_err(from_gguf.data(), adapted.data(), adapted.size());
  std::printf("[ merge --gguf ] merged GGUF vs --lora: %.3g\n", gguf_err);
  EXPECT_LE(gguf_err, 1e-3);
  std::filesystem::remove_all(merged);
  std::remove(gguf.c_str());
}

TEST(LoraCli, AnAdapterForAnotherModelIsAClearError) {
  int rc = -1;
  const std::string log = test::run_command(std::string(GEMFORGE_BINARY) + " score -m " + test::hf_tiny("gemma2") + " --lora " +
                                                kRefDir + "/adapter --ids 2,3,4 2>&1",
                                            &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("error"), std::string::npos) << log;
  EXPECT_EQ(log.find("Segmentation"), std::string::npos) << log;
}

}  // namespace
}  // namespace gf
