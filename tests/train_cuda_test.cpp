// The CUDA LoRA trainer (backend/cuda/train_*.cu) against the float32 CPU
// trainer, the reference. Skipped without a GPU.
//
// Ops (float32 on both sides, so tight): attention forward and backward
// (GQA, sliding window, soft-cap, packed segments, head sizes 16 to 256) by
// both GPU implementations, RMSNorm, RoPE and GeGLU forward and backward: max
// error <= 1e-4 of max(1, |ref|) (2e-3 for the attention gradients, whose sums
// run in another order over up to 80 keys; the GEMM attention rounds its
// inputs to TF32: 5e-3 for its output, 2e-2 for its gradients). Products with bf16 inputs (the frozen weights and the loss):
// relative L2 error <= 1e-2 (a bf16 rounding of the activations is 2^-9 relative).
//
// Every fixture the CPU trainer supports (the hf-tiny checkpoints are bf16, so
// the GPU's weights are the checkpoint's exactly; what differs is the GPU
// rounding each GEMM input activation to bf16):
//  - logits with a random adapter: max error <= 2e-2 of max(1, max |ref|);
//  - the loss of one sequence and of a packed two-segment sequence: relative error <= 1e-2;
//  - the adapter gradients: relative L2 error of all of them <= 5e-2, of each
//    matrix <= 0.15 (matrices whose gradient norm is above 1e-3 of the largest);
//  - five optimizer steps (AdamW, lr 1e-2) through the shared Trainer: each
//    step's loss within 5e-2 relative of the CPU's, and the loss falls on both.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <utility>

#include "backend/cuda/cuda_backend.h"
#include "core/half.h"
#include "reference_fixture.h"
#include "test_util.h"
#include "train/cpu_train_ops.h"
#include "train/lora_model.h"
#include "train/trainer.h"

namespace gf {
namespace {

using train::LoraAdapter;
using train::LoraGrads;
using train::LoraModel;

const std::vector<std::string> kTrainable = {
    "gemma1-mqa", "gemma1-mha", "gemma2", "gemma3-1b-like", "gemma3-4b-like", "gemma3-hd256", "gemma4-dense-31b-like", "gemma4-e2b-like"};

std::vector<float> randn(size_t n, float sd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// max |a - b| / max(1, max |b|)
double max_err(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 1;
  for (size_t i = 0; i < b.size(); ++i)
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i])), m = std::max(m, std::fabs(static_cast<double>(b[i])));
  return d / m;
}
// ||a - b|| / ||b||
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < b.size(); ++i)
    d += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]), n += static_cast<double>(b[i]) * b[i];
  return std::sqrt(d / std::max(n, 1e-30));
}

std::unique_ptr<TrainOps> gpu_ops() {
  auto o = try_make_cuda_train_ops(0);
  EXPECT_TRUE(o.ok()) << o.message();
  return o.ok() ? std::move(o).value() : nullptr;
}

// The CUDA ops' two attention implementations (backend/cuda/train_ops.cu), chosen when the ops are made.
const char* const kAttentionModes[] = {"gemm", "kernel"};
struct AttentionMode {
  explicit AttentionMode(const char* mode) { setenv("GEMFORGE_TRAIN_ATTENTION", mode, 1); }
  ~AttentionMode() { unsetenv("GEMFORGE_TRAIN_ATTENTION"); }
};

using Outputs = std::vector<std::vector<float>>;

// The buffers' values once the ops ran (a failed op fails the test).
Outputs outputs(TrainOps& o, std::initializer_list<const TBuf*> bufs) {
  Outputs out;
  for (const TBuf* b : bufs) {
    out.emplace_back(static_cast<size_t>(b->size()));
    o.download(*b, out.back().data());
  }
  EXPECT_TRUE(o.status().ok()) << o.status().message();
  return out;
}

// run(ops) on the float32 CPU ops (the reference, first) and on the GPU's.
template <class F>
std::pair<Outputs, Outputs> cpu_and_gpu(F&& run) {
  auto cpu = train::make_cpu_train_ops(true);
  auto gpu = gpu_ops();
  Outputs ref = run(*cpu);
  if (!gpu) return {std::move(ref), {}};
  return {std::move(ref), run(*gpu)};
}

// ---------------------------------------------------------------- ops

struct AttnCase {
  int heads, kv_heads, hd, window;
  float softcap;
  bool packed;
};

class CudaTrainAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaTrainAttention, ForwardAndBackwardEqualTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const AttnCase c = GetParam();
  const int64_t T = 80;
  std::vector<int32_t> ids(T, 0), pos;
  if (c.packed)
    for (int64_t t = 0; t < T; ++t) pos.push_back(static_cast<int32_t>(t < 30 ? t : t < 33 ? t - 30 : t - 33));  // segments 30, 3, 47
  AttnShape s;
  s.T = T, s.heads = c.heads, s.kv_heads = c.kv_heads, s.hd = c.hd, s.window = c.window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(c.hd)), s.softcap = c.softcap;
  s.pos = pos.empty() ? nullptr : pos.data();
  const int64_t nq = T * c.heads * c.hd, nk = T * c.kv_heads * c.hd;
  const auto q = randn(static_cast<size_t>(nq), 1.0f, 1), k = randn(static_cast<size_t>(nk), 1.0f, 2),
             v = randn(static_cast<size_t>(nk), 1.0f, 3), dout = randn(static_cast<size_t>(nq), 1.0f, 4);
  auto run = [&](TrainOps& o) {
    o.begin_sequence(ids, pos);
    TBuf bq = o.input(q.data(), nq), bk = o.input(k.data(), nk), bv = o.input(v.data(), nk), bd = o.input(dout.data(), nq);
    TBuf out = o.alloc(nq), saved, dq = o.alloc(nq), dk = o.alloc(nk), dv = o.alloc(nk);
    o.attention_fwd(s, bq, bk, bv, out, saved);
    o.attention_bwd(s, bq, bk, bv, out, saved, bd, dq, dk, dv);
    return outputs(o, {&out, &dq, &dk, &dv});
  };
  for (const char* mode : kAttentionModes) {
    AttentionMode use(mode);
    const auto [ref, got] = cpu_and_gpu(run);
    ASSERT_EQ(got.size(), ref.size());
    // The kernels are float32 throughout; the GEMM path rounds its inputs to TF32 (2^-11 relative).
    const bool tf32 = std::string(mode) == "gemm";
    const double out_tol = tf32 ? 5e-3 : 1e-4, grad_tol = tf32 ? 2e-2 : 2e-3;
    EXPECT_LE(max_err(got[0], ref[0]), out_tol) << mode << " out";
    EXPECT_LE(max_err(got[1], ref[1]), grad_tol) << mode << " dq";
    EXPECT_LE(max_err(got[2], ref[2]), grad_tol) << mode << " dk";
    EXPECT_LE(max_err(got[3], ref[3]), grad_tol) << mode << " dv";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaTrainAttention,
                         ::testing::Values(AttnCase{4, 2, 64, 0, 0.0f, false}, AttnCase{4, 1, 64, 16, 0.0f, true},
                                           AttnCase{8, 4, 256, 0, 50.0f, true}, AttnCase{2, 2, 32, 8, 2.0f, false},
                                           AttnCase{4, 2, 16, 0, 0.0f, true}));

TEST(CudaTrainOps, NormRopeGeluEqualTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const int64_t T = 37, H = 320, hd = 64;
  std::vector<int32_t> ids(T, 0), pos;
  for (int64_t t = 0; t < T; ++t) pos.push_back(static_cast<int32_t>(t < 20 ? t + 5000 : t - 20));  // large angles too
  const auto x = randn(static_cast<size_t>(T * H), 1.5f, 5), w = randn(static_cast<size_t>(H), 1.0f, 6),
             dy = randn(static_cast<size_t>(T * H), 1.0f, 7), u = randn(static_cast<size_t>(T * H), 1.0f, 8);
  std::vector<float> inv_freq(static_cast<size_t>(hd / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(hd));
  auto run = [&](TrainOps& o) {
    o.begin_sequence(ids, pos);
    TBuf bx = o.input(x.data(), T * H), bw = o.input(w.data(), H), bd = o.input(dy.data(), T * H), bu = o.input(u.data(), T * H),
         bf = o.input(inv_freq.data(), hd / 2);
    TBuf y = o.alloc(T * H), r = o.alloc(T), dx = o.alloc(T * H), yh = o.alloc(T * H), rh = o.alloc(T * H / hd);
    o.rmsnorm_fwd(bx, &bw, T, H, 1e-6f, y, r);
    o.rmsnorm_bwd(bx, &bw, r, bd, T, H, dx, false);
    o.rmsnorm_fwd(bx, nullptr, T * H / hd, hd, 1e-6f, yh, rh);  // per head, no weight
    TBuf rot = o.alloc(T * H), back = o.alloc(T * H);
    o.copy(rot, bx);
    o.rope(rot, T, H, static_cast<int>(hd), bf, false);
    o.copy(back, rot);
    o.rope(back, T, H, static_cast<int>(hd), bf, true);
    TBuf g = o.alloc(T * H), dg = o.alloc(T * H), du = o.alloc(T * H);
    o.copy(g, bx);
    o.gelu_mul(g, bu, T * H);
    o.gelu_mul_bwd(bx, bu, bd, T * H, dg, du);
    return outputs(o, {&y, &r, &dx, &yh, &rot, &back, &g, &dg, &du});
  };
  const auto [ref, got] = cpu_and_gpu(run);
  ASSERT_EQ(got.size(), ref.size());
  const char* names[] = {"rmsnorm y",    "rmsnorm r", "rmsnorm dx", "per-head rmsnorm", "rope",
                         "rope inverse", "gelu_mul",  "gelu dg",    "gelu du"};
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(max_err(got[i], ref[i]), 1e-4) << names[i];
  EXPECT_LE(max_err(got[5], x), 1e-4) << "rope then its inverse";
}

TEST(CudaTrainOps, ProductsAndLossEqualTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const int64_t T = 45, in = 96, out = 160, r = 8, V = 1000;
  std::vector<int32_t> ids(T, 0);
  // bf16 weights (exact on both sides), as in the fixtures.
  auto bf16_tensor = [](const std::vector<float>& v, int64_t rows, int64_t cols, std::vector<uint16_t>& store) {
    store.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) store[i] = f32_to_bf16(v[i]);
    TensorView t;
    t.name = "w";
    t.dtype = DType::BF16;
    t.shape = {rows, cols};
    t.data = reinterpret_cast<const uint8_t*>(store.data());
    t.nbytes = store.size() * 2;
    return t;
  };
  std::vector<uint16_t> ws, hs;
  const TensorView W = bf16_tensor(randn(static_cast<size_t>(out * in), 0.1f, 9), out, in, ws);
  const TensorView head = bf16_tensor(randn(static_cast<size_t>(V * in), 0.1f, 10), V, in, hs);
  const auto x = randn(static_cast<size_t>(T * in), 1.0f, 11), dy = randn(static_cast<size_t>(T * out), 1.0f, 12),
             A = randn(static_cast<size_t>(r * in), 0.1f, 13), B = randn(static_cast<size_t>(out * r), 0.1f, 14);
  std::vector<int32_t> rows, targets;
  for (int64_t t = 0; t < T; t += 2) rows.push_back(static_cast<int32_t>(t)), targets.push_back(static_cast<int32_t>((t * 37) % V));
  auto run = [&](TrainOps& o) {
    o.begin_sequence(ids, {});
    const int w = *o.add_weight(W, true), h = *o.add_weight(head, true);
    TBuf bx = o.input(x.data(), T * in), bd = o.input(dy.data(), T * out), bA = o.input(A.data(), r * in), bB = o.input(B.data(), out * r);
    TBuf y = o.alloc(T * out), dx = o.alloc(T * in), u = o.alloc(T * r), dA = o.alloc(r * in), dB = o.alloc(out * r);
    o.linear(w, bx, T, y, false);
    o.lora_fwd(bA, bB, r, in, out, 2.0f, bx, T, y, u);
    o.linear_t(w, bd, T, dx, false);
    o.lora_bwd(bA, bB, r, in, out, 2.0f, bx, u, bd, T, &dx, true, dA, dB);
    TBuf dxf = o.alloc(T * in);
    const double nll = o.cross_entropy(h, bx, in, rows, targets, 8.0f, 4, 0.5f, &dxf);
    Outputs res = outputs(o, {&y, &dx, &u, &dA, &dB, &dxf});
    res.push_back({static_cast<float>(nll)});
    return res;
  };
  const auto [ref, got] = cpu_and_gpu(run);
  ASSERT_EQ(got.size(), ref.size());
  const char* names[] = {"linear + lora_fwd", "linear_t + lora_bwd dx", "lora u", "lora dA", "lora dB", "loss dx", "loss"};
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(rel_l2(got[i], ref[i]), 1e-2) << names[i];
}

// ---------------------------------------------------------------- fixtures

class CudaTrainFixture : public ::testing::TestWithParam<std::string> {};

// A rank-4 adapter on every projection with random B (a fresh B = 0 would leave A without gradient).
LoraAdapter random_adapter(const ModelSpec& spec) {
  train::LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 8;
  auto ad = train::make_adapter(spec, cfg, 7);
  EXPECT_TRUE(ad.ok());
  uint32_t seed = 100;
  for (auto& m : ad->mats) m.B = randn(m.B.size(), 0.05f, seed++);
  return std::move(ad).value();
}

std::vector<float> flat(const LoraGrads& g) {
  std::vector<float> out;
  for (const auto& v : g.g) out.insert(out.end(), v.begin(), v.end());
  return out;
}

TEST_P(CudaTrainFixture, LossAndGradientsEqualTheCpuTrainer) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const std::string dir = test::shared_fixture(GetParam());
  auto model = load_model(dir);
  ASSERT_TRUE(model.ok()) << model.message();
  auto cpu = LoraModel::create(*model);
  ASSERT_TRUE(cpu.ok()) << cpu.message();
  const LoraAdapter ad = random_adapter(model->spec);
  // Logits of 24 tokens; one step's loss and gradients over a plain sequence (with a loss mask) and a packed one.
  std::vector<int32_t> ids;
  std::mt19937 rng(3);
  for (int t = 0; t < 40; ++t) ids.push_back(static_cast<int32_t>(2 + rng() % static_cast<uint32_t>(model->spec.vocab_size - 2)));
  const std::vector<int32_t> short_ids(ids.begin(), ids.begin() + 24);
  std::vector<uint8_t> mask(ids.size(), 1);
  for (int t = 0; t < 5; ++t) mask[static_cast<size_t>(t)] = 0;
  std::vector<int32_t> packed_pos;
  for (int t = 0; t < 40; ++t) packed_pos.push_back(t < 17 ? t : t - 17);
  const std::vector<uint8_t> no_mask;
  const std::vector<int32_t> no_pos;
  const std::vector<LoraModel::Seq> seqs = {{&ids, &mask, &no_pos, 0}, {&ids, &no_mask, &packed_pos, 0}};
  auto lr = (*cpu)->logits(short_ids, ad);
  ASSERT_TRUE(lr.ok()) << lr.message();
  LoraGrads gr = LoraGrads::zeros_like(ad);
  auto r = (*cpu)->forward_backward(seqs, ad, &gr, 1.0f / 70.0f);
  ASSERT_TRUE(r.ok()) << r.message();
  double largest = 0;
  for (const auto& v : gr.g) largest = std::max(largest, std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0)));

  // bf16 activations into the frozen GEMMs. The Gemma 4 fixtures (attention
  // scale 1, so rounded q and k reach the scores unscaled) move ~4x more
  // under that rounding: CUDA inference on gemma4-dense-31b-like is within
  // 0.19 of the reference logits where the others are within 0.046
  // (decoder_cuda_test), and here 0.028 / 0.071 where the others pass 2e-2 / 5e-2.
  const bool gemma4 = model->spec.family == Family::Gemma4;
  const double logit_tol = gemma4 ? 4e-2 : 2e-2, grad_tol = gemma4 ? 1e-1 : 5e-2;
  for (const char* mode : kAttentionModes) {
    SCOPED_TRACE(std::string("attention ") + mode);
    AttentionMode use(mode);
    auto gpu = LoraModel::create(*model, gpu_ops());
    ASSERT_TRUE(gpu.ok()) << gpu.message();
    auto lg = (*gpu)->logits(short_ids, ad);
    ASSERT_TRUE(lg.ok()) << lg.message();
    const double logit_err = max_err(*lg, *lr);
    EXPECT_LE(logit_err, logit_tol) << "logits";
    LoraGrads gg = LoraGrads::zeros_like(ad);
    auto g = (*gpu)->forward_backward(seqs, ad, &gg, 1.0f / 70.0f);
    ASSERT_TRUE(g.ok()) << g.message();
    EXPECT_EQ(g->tokens, r->tokens);
    const double loss_err = std::fabs(g->nll_sum - r->nll_sum) / std::fabs(r->nll_sum);
    EXPECT_LE(loss_err, 1e-2) << "loss " << g->nll_sum << " vs " << r->nll_sum;
    const double grad_err = rel_l2(flat(gg), flat(gr));
    EXPECT_LE(grad_err, grad_tol) << "all adapter gradients";
    double worst = 0;
    for (size_t i = 0; i < gr.g.size(); ++i) {
      const double n = std::sqrt(std::inner_product(gr.g[i].begin(), gr.g[i].end(), gr.g[i].begin(), 0.0));
      if (n < 1e-3 * largest) continue;
      const double e = rel_l2(gg.g[i], gr.g[i]);
      worst = std::max(worst, e);
      const auto& m = ad.mats[i / 2];
      EXPECT_LE(e, 0.15) << "layer " << m.layer << " " << train::proj_module(m.proj) << (i % 2 ? " lora_B" : " lora_A");
    }
    const std::string tag = std::string("_") + mode;
    RecordProperty("logit_err" + tag, std::to_string(logit_err));
    RecordProperty("loss_rel_err" + tag, std::to_string(loss_err));
    RecordProperty("grad_rel_l2" + tag, std::to_string(grad_err));
    RecordProperty("worst_matrix_rel_l2" + tag, std::to_string(worst));
  }
}

TEST_P(CudaTrainFixture, OptimizerStepsFollowTheCpuTrainer) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const std::string dir = test::shared_fixture(GetParam());
  auto model = load_model(dir);
  ASSERT_TRUE(model.ok()) << model.message();
  std::vector<train::Example> data;
  std::mt19937 rng(5);
  for (int i = 0; i < 4; ++i) {
    train::Example e;
    e.ids.push_back(2);
    for (int t = 0; t < 19; ++t) e.ids.push_back(static_cast<int32_t>(3 + rng() % static_cast<uint32_t>(model->spec.vocab_size - 3)));
    e.mask.assign(e.ids.size(), 1);
    e.line = i + 1;
    data.push_back(e);
  }
  auto curve = [&](std::unique_ptr<TrainOps> ops, const std::string& name) {
    std::vector<double> losses;
    auto lm = LoraModel::create(*model, std::move(ops));
    EXPECT_TRUE(lm.ok()) << lm.message();
    if (!lm.ok()) return losses;
    train::TrainConfig cfg;
    cfg.steps = 5;
    cfg.lr = 1e-2;
    cfg.batch = 2;
    cfg.grad_accum = 2;
    cfg.seed = 3;
    cfg.schedule = train::Schedule::Constant;
    cfg.lora.rank = 4;
    cfg.lora.alpha = 8;
    cfg.out_dir = test::temp_path("cuda_train_" + GetParam() + "_" + name);
    auto tr = train::Trainer::create(**lm, cfg, data, {});
    EXPECT_TRUE(tr.ok()) << tr.message();
    if (!tr.ok()) return losses;
    Status s = (*tr)->run([&](const train::StepStats& st) { losses.push_back(st.loss); });
    EXPECT_TRUE(s.ok()) << s.message();
    std::filesystem::remove_all(cfg.out_dir);
    return losses;
  };
  const auto ref = curve(train::make_cpu_train_ops(false), "cpu");
  const auto got = curve(gpu_ops(), "cuda");
  ASSERT_EQ(ref.size(), 5u);
  ASSERT_EQ(got.size(), 5u);
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LE(std::fabs(got[i] - ref[i]) / ref[i], 5e-2) << "step " << i + 1 << ": " << got[i] << " vs " << ref[i];
  EXPECT_LT(ref.back(), ref.front());
  EXPECT_LT(got.back(), got.front());
  RecordProperty("cpu_losses", std::to_string(ref.front()) + " -> " + std::to_string(ref.back()));
  RecordProperty("cuda_losses", std::to_string(got.front()) + " -> " + std::to_string(got.back()));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaTrainFixture, ::testing::ValuesIn(kTrainable), [](const auto& info) {
  std::string n = info.param;
  for (auto& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

TEST(CudaTrain, MoeIsRefusedClearly) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  auto model = load_model(test::shared_fixture("gemma4-moe-like"));
  ASSERT_TRUE(model.ok()) << model.message();
  auto lm = LoraModel::create(*model, gpu_ops());
  ASSERT_FALSE(lm.ok());
  EXPECT_NE(lm.message().find("mixture-of-experts"), std::string::npos) << lm.message();
}

}  // namespace
}  // namespace gf
