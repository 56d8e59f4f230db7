// Several LoRA adapters in one CUDA batch (the gathered per-adapter GEMMs and
// the add_rows kernel): each sequence of a step that mixes adapter A, adapter
// B and the base model gets the logits the decoder made with only its own
// adapter gives it alone. Prefill (cuBLAS path) and decode (GEMV path) steps.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cuda/cuda_backend.h"
#include "model/decoder.h"
#include "reference_fixture.h"
#include "train/lora.h"

namespace gf {
namespace {

TEST(CudaLoraServe, MixedAdapterBatchEqualsEachAlone) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const std::string dir = test::shared_fixture("gemma3-1b-like");
  auto model = load_hf_model(dir, dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.message();
  auto be = try_make_cuda_backend(0);
  ASSERT_TRUE(be.ok()) << be.message();
  // Random adapters (a fresh one's B is zero): A rank 8 on every projection, B rank 4 on q, v, down.
  std::vector<train::LoraAdapter> keep;
  auto random_adapter = [&](int rank, std::vector<Projection> targets, uint64_t seed) {
    train::LoraConfig cfg;
    cfg.rank = rank;
    cfg.targets = std::move(targets);
    auto made = train::make_adapter(model->spec, cfg, seed);
    EXPECT_TRUE(made.ok());
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::normal_distribution<float> nd(0.0f, 0.3f);
    keep.push_back(std::move(*made));
    Adapter view;
    for (auto& m : keep.back().mats) {
      for (float& x : m.B) x = nd(rng);
      view.push_back({m.layer, m.proj, rank, m.in, m.out, m.A.data(), m.B.data(), cfg.scaling()});
    }
    return view;
  };
  keep.reserve(2);
  const Adapter a_view = random_adapter(8, {Projection::Q, Projection::K, Projection::V, Projection::O, Projection::Gate, Projection::Up,
                                            Projection::Down}, 5);
  const Adapter b_view = random_adapter(4, {Projection::Q, Projection::V, Projection::Down}, 7);
  auto mixed = Decoder::create(*model, **be);
  ASSERT_TRUE(mixed.ok());
  ASSERT_TRUE((*mixed)->add_adapter(1, a_view).ok());
  ASSERT_TRUE((*mixed)->add_adapter(2, b_view).ok());
  auto with_a = Decoder::create(*model, **be, a_view), with_b = Decoder::create(*model, **be, b_view), base = Decoder::create(*model, **be);
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
  float moved = 0;
  for (int64_t i = 0; i < V; ++i) moved = std::max(moved, std::fabs(alone[0][0][static_cast<size_t>(i)] - (*plain)[static_cast<size_t>(i)]));
  EXPECT_GT(moved, 0.1f) << "adapter A hardly changes the logits: the test would not see a lost adapter";
}

}  // namespace
}  // namespace gf
