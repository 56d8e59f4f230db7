// Several LoRA adapters in one CUDA batch (the gathered per-adapter GEMMs and
// the add_rows kernel): each sequence of a step that mixes adapter A, adapter
// B and the base model gets the logits the decoder made with only its own
// adapter gives it alone. Prefill (cuBLAS path) and decode (GEMV path) steps.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <random>

#include "backend/cuda/cuda_backend.h"
#include "model/decoder.h"
#include "reference_fixture.h"
#include "train/lora_io.h"

namespace gf {
namespace {

const std::string kPeftAdapter = std::string(GEMFORGE_SOURCE_DIR) + "/tests/lora_references/lora-gemma3-1b-like/adapter";

TEST(CudaLoraServe, MixedAdapterBatchEqualsEachAlone) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const std::string dir = test::shared_fixture("gemma3-1b-like");
  auto model = load_hf_model(dir, dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.message();
  auto be = try_make_cuda_backend(0);
  ASSERT_TRUE(be.ok()) << be.message();
  auto a = train::load_adapter_view(kPeftAdapter, model->spec);
  ASSERT_TRUE(a.ok()) << a.message();
  train::LoraConfig cfg;
  cfg.rank = 4;
  cfg.targets = {Projection::Q, Projection::V, Projection::Down};
  auto b = train::make_adapter(model->spec, cfg, 7);
  ASSERT_TRUE(b.ok());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  Adapter b_view;
  for (auto& m : b->mats) {
    for (float& x : m.B) x = nd(rng);
    b_view.push_back({m.layer, m.proj, cfg.rank, m.in, m.out, m.A.data(), m.B.data(), cfg.scaling()});
  }
  auto mixed = Decoder::create(*model, **be);
  ASSERT_TRUE(mixed.ok());
  ASSERT_TRUE((*mixed)->add_adapter(1, a->view).ok());
  ASSERT_TRUE((*mixed)->add_adapter(2, b_view).ok());
  auto with_a = Decoder::create(*model, **be, a->view), with_b = Decoder::create(*model, **be, b_view), base = Decoder::create(*model, **be);
  ASSERT_TRUE(with_a.ok() && with_b.ok() && base.ok());
  Decoder* alone_of[3] = {base->get(), with_a->get(), with_b->get()};

  const int64_t V = model->spec.vocab_size;
  const int adapters[4] = {1, 2, 0, 1};
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < 4; ++s) {
    std::vector<int32_t> p;
    for (int i = 0; i < 5 + 6 * s; ++i) p.push_back(static_cast<int32_t>((s * 131 + i * 17 + 5) % V));
    prompts.push_back(p);
  }
  const int steps = 6;
  // Alone, greedy.
  std::vector<std::vector<std::vector<float>>> alone(4);
  for (int s = 0; s < 4; ++s) {
    Decoder& d = *alone_of[adapters[s]];
    auto c = d.new_cache(256);
    auto l = d.forward(prompts[static_cast<size_t>(s)], **c, false);
    ASSERT_TRUE(l.ok());
    for (int i = 0; i < steps; ++i) {
      alone[static_cast<size_t>(s)].push_back(*l);
      l = d.forward({argmax(l->data(), V)}, **c, false);
      ASSERT_TRUE(l.ok());
    }
  }
  // Together: one prefill step of all four, then decode steps of all four.
  auto cache = (*mixed)->new_paged_cache(256, 16);
  ASSERT_TRUE(cache.ok());
  std::vector<SeqState> seqs(4);
  std::vector<SeqStep> batch(4);
  for (int s = 0; s < 4; ++s) {
    batch[static_cast<size_t>(s)].seq = &seqs[static_cast<size_t>(s)];
    batch[static_cast<size_t>(s)].ids = prompts[static_cast<size_t>(s)];
    batch[static_cast<size_t>(s)].adapter = adapters[s];
  }
  double worst = 0;
  int mismatches = 0;
  for (int i = 0; i < steps; ++i) {
    auto out = (*mixed)->forward_batch(**cache, batch);
    ASSERT_TRUE(out.ok()) << out.message();
    for (int s = 0; s < 4; ++s) {
      const auto& got = (*out)[static_cast<size_t>(s)];
      const auto& want = alone[static_cast<size_t>(s)][static_cast<size_t>(i)];
      ASSERT_EQ(got.size(), static_cast<size_t>(V));
      worst = std::max(worst, test::kl_div(want.data(), got.data(), V));
      mismatches += argmax(want.data(), V) != argmax(got.data(), V);
      batch[static_cast<size_t>(s)].ids = {argmax(want.data(), V)};
    }
  }
  std::printf("[ CUDA mixed adapters ] vs each alone: max KL %.3g, top-1 mismatches %d\n", worst, mismatches);
  EXPECT_LT(worst, 1e-3);
  EXPECT_EQ(mismatches, 0);
  // The adapters matter: A's first row differs from the base model's on the same prompt.
  auto c = (*base)->new_cache(256);
  auto plain = (*base)->forward(prompts[0], **c, false);
  ASSERT_TRUE(plain.ok());
  EXPECT_GT(test::kl_div(alone[0][0].data(), plain->data(), V), 1e-4);
}

}  // namespace
}  // namespace gf
