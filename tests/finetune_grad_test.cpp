// The LoRA training graph (src/train) on the shared hf-tiny fixtures:
//  - with B = 0 its logits equal the HF reference (fixture tolerance 1e-3
//    relative) and the Decoder's (1e-4);
//  - its LoRA gradients equal central finite differences of its own loss, for
//    every projection kind, A and B, on every supported generation;
//  - the chunked loss equals the loss from full logits;
//  - MoE models are refused with a clear error.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "model/decoder.h"
#include "reference_fixture.h"
#include "test_util.h"
#include "train/lora_model.h"

namespace gf {
namespace {

using train::LoraAdapter;
using train::LoraConfig;
using train::LoraModel;
using train::Proj;

const std::vector<std::string> kTrainable = {"gemma1-mqa", "gemma1-mha", "gemma2", "gemma3-1b-like", "gemma3-4b-like", "gemma3-hd256",
                            "gemma4-dense-31b-like", "gemma4-e2b-like"};

class FinetuneFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(FinetuneFixture, LogitsWithZeroBEqualReferenceAndDecoder) {
  const std::string dir = test::hf_tiny(GetParam());
  auto model = load_model(dir);
  ASSERT_TRUE(model.ok()) << model.message();
  test::Reference ref = test::load_reference(dir);
  ASSERT_TRUE(ref.error.empty()) << ref.error;
  auto lm = LoraModel::create(*model);
  ASSERT_TRUE(lm.ok()) << lm.message();
  LoraConfig cfg;
  cfg.rank = 4;
  auto ad = train::make_adapter(model->spec, cfg, 7);
  ASSERT_TRUE(ad.ok()) << ad.message();
  auto logits = (*lm)->logits(ref.input_ids, *ad);
  ASSERT_TRUE(logits.ok()) << logits.message();
  ASSERT_EQ(logits->size(), ref.logits.size());
  const double err_ref = test::max_rel_err(logits->data(), ref.logits.data(), ref.logits.size());
  EXPECT_LE(err_ref, 1e-3) << "vs the HF reference";

  auto be = make_cpu_backend();
  auto dec = Decoder::create(*model, *be);
  ASSERT_TRUE(dec.ok());
  auto cache = (*dec)->new_cache(static_cast<int64_t>(ref.input_ids.size()));
  ASSERT_TRUE(cache.ok());
  auto dl = (*dec)->forward(ref.input_ids, **cache, true);
  ASSERT_TRUE(dl.ok());
  const double err_dec = test::max_rel_err(logits->data(), dl->data(), dl->size());
  EXPECT_LE(err_dec, 1e-3) << "vs the Decoder";
  RecordProperty("err_ref", std::to_string(err_ref));
  RecordProperty("err_decoder", std::to_string(err_dec));

  // Chunked cross entropy == cross entropy of the full logits.
  std::vector<uint8_t> mask(ref.input_ids.size(), 1);
  for (size_t i = 0; i < mask.size(); i += 3) mask[i] = 0;
  (*lm)->set_loss_chunk(5);
  auto loss = (*lm)->forward_backward(ref.input_ids, mask, *ad, nullptr, 1.0f, 0);
  ASSERT_TRUE(loss.ok()) << loss.message();
  const int64_t V = model->spec.vocab_size;
  double want = 0;
  int64_t n = 0;
  for (size_t t = 0; t + 1 < ref.input_ids.size(); ++t) {
    if (!mask[t + 1]) continue;
    const float* l = logits->data() + t * V;
    double mx = -1e30, z = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(l[v]));
    for (int64_t v = 0; v < V; ++v) z += std::exp(l[v] - mx);
    want += mx + std::log(z) - l[ref.input_ids[t + 1]];
    ++n;
  }
  EXPECT_EQ(loss->tokens, n);
  EXPECT_NEAR(loss->nll_sum, want, 1e-4 * std::abs(want));
}

// Loss of a short sequence as a function of the adapter.
double seq_loss(LoraModel& lm, const std::vector<int32_t>& ids, const LoraAdapter& ad) {
  auto r = lm.forward_backward(ids, {}, ad, nullptr, 1.0f, 0);
  return r.ok() ? r->nll_sum / static_cast<double>(r->tokens) : NAN;
}

// For each adapted projection kind and each of A, B: the directional derivative
// along a random unit direction d (over that kind's tensors in every layer)
// from the analytic gradient, g . d, against (L(w + h d) - L(w - h d)) / 2h.
// Float32 forward over float32 weights, h = 1e-2: the quotient carries ~1e-6/2h of
// rounding noise and O(h^2) curvature error; tolerance 2e-2 relative + 5e-5 absolute
// (typical agreement is 1e-3 relative; a wrong term in any backward step is off by >10%).
TEST_P(FinetuneFixture, LoraGradientsMatchFiniteDifferences) {
  const std::string dir = test::hf_tiny(GetParam());
  auto model = load_model(dir);
  ASSERT_TRUE(model.ok()) << model.message();
  auto lm = LoraModel::create(*model, /*f32_weights=*/true);
  ASSERT_TRUE(lm.ok()) << lm.message();
  LoraConfig cfg;
  cfg.rank = 2;
  cfg.alpha = 4;
  auto adr = train::make_adapter(model->spec, cfg, 3);
  ASSERT_TRUE(adr.ok());
  LoraAdapter ad = *adr;
  // Nonzero B so that A has a gradient.
  train::Rng rng(11);
  for (auto& m : ad.mats)
    for (auto& v : m.B) v = static_cast<float>((rng.uniform() * 2 - 1) * 0.2);
  std::vector<int32_t> ids;
  for (int i = 0; i < 14; ++i) ids.push_back(static_cast<int32_t>(2 + (i * 37 + 5) % (model->spec.vocab_size - 2)));
  auto grads = train::LoraGrads::zeros_like(ad);
  auto r = (*lm)->forward_backward(ids, {}, ad, &grads, 1.0f / 13.0f, 0);
  ASSERT_TRUE(r.ok()) << r.message();
  for (int p = 0; p < train::kNumProj; ++p)
    for (int which = 0; which < 2; ++which) {
      std::vector<size_t> tensors;
      for (size_t i = 0; i < ad.mats.size(); ++i)
        if (static_cast<int>(ad.mats[i].proj) == p) tensors.push_back(i * 2 + static_cast<size_t>(which));
      if (tensors.empty()) continue;
      std::vector<std::vector<float>> dir_v;
      double norm = 0;
      for (size_t ti : tensors) {
        dir_v.emplace_back(ad.tensor(ti).size());
        for (auto& v : dir_v.back()) v = static_cast<float>(rng.uniform() * 2 - 1), norm += double(v) * v;
      }
      double analytic = 0;
      for (size_t k = 0; k < tensors.size(); ++k)
        for (size_t j = 0; j < dir_v[k].size(); ++j) {
          dir_v[k][j] = static_cast<float>(dir_v[k][j] / std::sqrt(norm));
          analytic += double(grads.g[tensors[k]][j]) * dir_v[k][j];
        }
      const double h = std::getenv("FD_H") ? std::atof(std::getenv("FD_H")) : 1e-2;
      auto shifted = [&](double sign) {
        LoraAdapter a2 = ad;
        for (size_t k = 0; k < tensors.size(); ++k)
          for (size_t j = 0; j < dir_v[k].size(); ++j) a2.tensor(tensors[k])[j] += static_cast<float>(sign * h * dir_v[k][j]);
        return seq_loss(**lm, ids, a2);
      };
      const double numeric = (shifted(1) - shifted(-1)) / (2 * h);
      // The central difference carries the float32 loss's rounding / (2h),
      // whatever the direction: besides 2% of the value, allow 0.2% of the
      // gradient's norm (a random unit direction sees ~norm / sqrt(#params)).
      double gnorm = 0;
      for (size_t ti : tensors)
        for (float g : grads.g[ti]) gnorm += double(g) * g;
      gnorm = std::sqrt(gnorm);
      EXPECT_NEAR(analytic, numeric, 2e-2 * std::abs(numeric) + 2e-3 * gnorm + 5e-5)
          << train::proj_module(static_cast<Proj>(p)) << (which ? ".lora_B" : ".lora_A");
    }
}

INSTANTIATE_TEST_SUITE_P(HfTiny, FinetuneFixture, ::testing::ValuesIn(kTrainable), [](const auto& info) {
  std::string n = info.param;
  for (auto& c : n)
    if (c == '-') c = '_';
  return n;
});

TEST(FinetuneUnsupported, MoeIsRefused) {
  for (const char* name : {"gemma4-moe-like"}) {
    auto model = load_model(test::hf_tiny(name));
    ASSERT_TRUE(model.ok()) << model.message();
    auto lm = LoraModel::create(*model);
    ASSERT_FALSE(lm.ok()) << name;
    EXPECT_NE(lm.message().find("not trainable yet"), std::string::npos) << lm.message();
  }
}

}  // namespace
}  // namespace gf

namespace gf {
namespace {

// LoRA dropout (the masks are a function of the seed, so the loss is a
// deterministic function of the adapter) and rsLoRA scaling, on a subset of
// targets: the same finite-difference check as above.
TEST(FinetuneGradients, DropoutAndRsLoraOnSomeTargets) {
  auto model = load_model(test::hf_tiny("gemma3-1b-like"));
  ASSERT_TRUE(model.ok());
  auto lm = LoraModel::create(*model, true);
  ASSERT_TRUE(lm.ok());
  LoraConfig cfg;
  cfg.rank = 3;
  cfg.alpha = 5;
  cfg.rslora = true;
  cfg.dropout = 0.3f;
  auto targets = train::parse_targets("v,o_proj,up");
  ASSERT_TRUE(targets.ok());
  cfg.targets = *targets;
  auto adr = train::make_adapter(model->spec, cfg, 9);
  ASSERT_TRUE(adr.ok());
  LoraAdapter ad = *adr;
  EXPECT_EQ(ad.mats.size(), 3u * model->spec.num_layers);
  EXPECT_FLOAT_EQ(ad.cfg.scaling(), 5.0f / std::sqrt(3.0f));
  train::Rng rng(4);
  for (auto& m : ad.mats)
    for (auto& v : m.B) v = static_cast<float>((rng.uniform() * 2 - 1) * 0.2);
  std::vector<int32_t> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(static_cast<int32_t>(3 + (i * 53 + 7) % 500));
  const uint64_t seed = 77;
  auto loss = [&](const LoraAdapter& a, train::LoraGrads* g) {
    train::LoraGrads scratch = train::LoraGrads::zeros_like(a);
    auto r = (*lm)->forward_backward(ids, {}, a, g ? g : &scratch, 1.0f, seed);  // grads given: dropout on
    return r.ok() ? r->nll_sum : NAN;
  };
  auto grads = train::LoraGrads::zeros_like(ad);
  const double base = loss(ad, &grads);
  ASSERT_TRUE(std::isfinite(base));
  // Without the seed's masks the loss differs: dropout is really applied.
  auto plain = (*lm)->forward_backward(ids, {}, ad, nullptr, 1.0f, seed);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(plain->nll_sum, base);
  for (size_t ti = 0; ti < ad.num_tensors(); ti += 5) {  // a spread of A and B tensors
    std::vector<float> d(ad.tensor(ti).size());
    double norm = 0, analytic = 0;
    for (auto& v : d) v = static_cast<float>(rng.uniform() * 2 - 1), norm += double(v) * v;
    for (size_t j = 0; j < d.size(); ++j) d[j] = static_cast<float>(d[j] / std::sqrt(norm)), analytic += double(grads.g[ti][j]) * d[j];
    const double h = 1e-2;
    auto shifted = [&](double sgn) {
      LoraAdapter a2 = ad;
      for (size_t j = 0; j < d.size(); ++j) a2.tensor(ti)[j] += static_cast<float>(sgn * h * d[j]);
      return loss(a2, nullptr);
    };
    const double numeric = (shifted(1) - shifted(-1)) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 2e-2 * std::abs(numeric) + 5e-4) << "tensor " << ti;  // sums over 11 tokens: 11x the absolute noise
  }
}

}  // namespace
}  // namespace gf

#include "train/dataset.h"

namespace gf {
namespace {

// Packing: two examples in one sequence (positions restarting, no attention
// across them) give the loss and gradients of the two run apart, on a model
// with sliding windows and KV sharing (Gemma 4 E2B shape).
TEST(FinetunePacking, PackedEqualsSeparate) {
  for (const char* name : {"gemma3-1b-like", "gemma4-e2b-like"}) {
    auto model = load_model(test::hf_tiny(name));
    ASSERT_TRUE(model.ok());
    auto lm = LoraModel::create(*model, true);
    ASSERT_TRUE(lm.ok());
    LoraConfig cfg;
    cfg.rank = 2;
    auto adr = train::make_adapter(model->spec, cfg, 5);
    ASSERT_TRUE(adr.ok());
    LoraAdapter ad = *adr;
    train::Rng rng(8);
    for (auto& m : ad.mats)
      for (auto& v : m.B) v = static_cast<float>((rng.uniform() * 2 - 1) * 0.2);
    std::vector<train::Example> ex(2);
    for (int i = 0; i < 2; ++i) {
      ex[i].ids.push_back(2);
      for (int t = 0; t < 9 + 4 * i; ++t) ex[i].ids.push_back(static_cast<int32_t>(3 + rng.next() % 500));
      ex[i].mask.assign(ex[i].ids.size(), 1);
      ex[i].mask[1] = 0;
    }
    auto packed = train::pack_examples(ex, 64);
    ASSERT_EQ(packed.size(), 1u);
    EXPECT_EQ(packed[0].targets(), ex[0].targets() + ex[1].targets());
    auto g_sep = train::LoraGrads::zeros_like(ad), g_pack = train::LoraGrads::zeros_like(ad);
    double sep = 0;
    for (const auto& e : ex) {
      auto r = (*lm)->forward_backward(e.ids, e.mask, ad, &g_sep, 1.0f, 0);
      ASSERT_TRUE(r.ok());
      sep += r->nll_sum;
    }
    auto r = (*lm)->forward_backward(packed[0].ids, packed[0].mask, packed[0].pos, ad, &g_pack, 1.0f, 0);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r->tokens, packed[0].targets());
    EXPECT_NEAR(r->nll_sum, sep, 1e-5 * sep) << name;
    double num = 0, den = 0;
    for (size_t i = 0; i < g_sep.g.size(); ++i)
      for (size_t j = 0; j < g_sep.g[i].size(); ++j)
        num += std::pow(double(g_pack.g[i][j]) - g_sep.g[i][j], 2), den += double(g_sep.g[i][j]) * g_sep.g[i][j];
    EXPECT_LE(std::sqrt(num / den), 1e-5) << name;
  }
}

}  // namespace
}  // namespace gf
