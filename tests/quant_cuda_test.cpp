// GGUF block-quantized weights on the GPU (src/backend/cuda/quant.cu):
//  - every kept type through each path (quantized GEMV for M <= 8, decode to
//    bf16 + cuBLASLt above) against the float64 product of the CPU oracle's
//    dequantized rows (formats/dequant.h);
//  - whole GGUF models (the real Gemma 3 270M Q4_K_M by default) on the GPU
//    against the CPU backend on the same file;
//  - a type the GPU does not keep is a clear error.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <random>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/half.h"
#include "formats/dequant.h"
#include "model/decoder.h"
#include "reference_fixture.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace gf {
namespace {

#define REQUIRE_GPU()                                                                 \
  do {                                                                                \
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

// Random blocks with finite float16 scales of magnitude <= `s`.
std::vector<uint8_t> random_blocks(DType t, int64_t rows, int64_t K, std::mt19937& rng, float s) {
  const int be = dtype_info(t).block_elems, bb = dtype_info(t).block_bytes;
  std::vector<uint8_t> data(static_cast<size_t>(rows * K / be * bb));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-s, s);
  for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
  const std::vector<int> halves = t == DType::Q6_K ? std::vector<int>{208}
                                  : (t == DType::Q4_K || t == DType::Q5_K) ? std::vector<int>{0, 2}
                                                                           : std::vector<int>{0};
  for (int64_t blk = 0; blk < rows * K / be; ++blk)
    for (int off : halves) {
      const uint16_t h = f32_to_f16(scale(rng));
      std::memcpy(&data[static_cast<size_t>(blk * bb + off)], &h, 2);
    }
  return data;
}

TEST(CudaQuant, EveryTypeAndPathEqualsTheDequantizedProduct) {
  REQUIRE_GPU();
  auto be = try_make_cuda_backend(0);
  ASSERT_TRUE(be.ok()) << be.message();
  std::mt19937 rng(11);
  // N not a multiple of the 8 rows a GEMV block owns; K from one super-block
  // to more runs than a warp has lanes (the GEMV's second run in flight).
  for (auto [N, K] : {std::pair<int64_t, int64_t>{203, 768}, {64, 256}, {40, 2304}})
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> blocks = random_blocks(t, N, K, rng, 0.02f);
    TensorView tv;
    tv.name = std::string("w.") + dtype_name(t);
    tv.dtype = t;
    tv.shape = {N, K};
    tv.data = blocks.data();
    tv.nbytes = blocks.size();
    auto w = (*be)->upload_matrix(tv);
    ASSERT_TRUE(w.ok()) << w.message();
    std::vector<float> Wf(static_cast<size_t>(N * K));
    const size_t row_bytes = blocks.size() / N;
    for (int64_t r = 0; r < N; ++r) ASSERT_TRUE(dequantize_row(t, blocks.data() + r * row_bytes, Wf.data() + r * K, K).ok());
    for (int64_t M : {1, 3, 8, 9, 20, 40}) {
      std::vector<float> x(static_cast<size_t>(M * K));
      std::normal_distribution<float> nd(0.f, 1.f);
      for (float& v : x) v = nd(rng);
      Act xa = (*be)->alloc(M, K), ya = (*be)->alloc(M, N);
      (*be)->upload(xa, x.data());
      (*be)->matmul(xa, *w, ya);
      std::vector<float> y(static_cast<size_t>(M * N));
      (*be)->download(ya, y.data());
      // M <= 8: the GEMV rounds x to int8 (32 per scale amax / 127, as the
      // CPU's quantize_acts), so the reference multiplies that rounded x.
      std::vector<float> xr = x;
      if (M <= 8)
        for (size_t b = 0; b < xr.size(); b += 32) {
          float amax = 0;
          for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xr[b + i]));
          const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
          for (size_t i = 0; i < 32; ++i) xr[b + i] = d * std::nearbyint(xr[b + i] * id);
        }
      // Error relative to each output's scale, sum |x_k W_nk| (bf16 rounding is relative to that).
      double worst = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double ref = 0, mag = 1e-12;
          for (int64_t k = 0; k < K; ++k) {
            ref += double(xr[m * K + k]) * Wf[n * K + k];
            mag += std::fabs(double(xr[m * K + k]) * Wf[n * K + k]);
          }
          worst = std::max(worst, std::fabs(ref - y[m * N + n]) / mag);
        }
      // M <= 8: exact integer dot products, float32 scales and sums. Larger M:
      // bf16 activations and weights (cuBLASLt), 2^-8 relative each at most.
      const double limit = M <= 8 ? 1e-5 : 8e-3;
      EXPECT_LT(worst, limit) << dtype_name(t) << " N=" << N << " K=" << K << " M=" << M;
      (*be)->release(xa);
      (*be)->release(ya);
    }
    (*be)->free_weight(*w);
  }
}

TEST(CudaQuant, QuantizedEmbeddingRowsEqualTheOracle) {
  REQUIRE_GPU();
  auto be = try_make_cuda_backend(0);
  ASSERT_TRUE(be.ok()) << be.message();
  std::mt19937 rng(5);
  const int64_t V = 50;
  for (int64_t H : {256, 512})  // 256: Q6_K rows of 210 bytes, every other one 2 bytes off 4-byte alignment
  for (DType t : {DType::Q8_0, DType::Q6_K, DType::Q4_K, DType::Q5_0}) {
    std::vector<uint8_t> blocks = random_blocks(t, V, H, rng, 0.5f);
    TensorView tv;
    tv.name = "token_embd.weight";
    tv.dtype = t;
    tv.shape = {V, H};
    tv.data = blocks.data();
    tv.nbytes = blocks.size();
    auto w = (*be)->upload_matrix(tv);
    ASSERT_TRUE(w.ok()) << w.message();
    const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    Act out = (*be)->alloc(static_cast<int64_t>(ids.size()), H);
    (*be)->embed(*w, ids, 3.0f, out);
    std::vector<float> got(ids.size() * H), row(H);
    (*be)->download(out, got.data());
    const size_t row_bytes = blocks.size() / V;
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(dequantize_row(t, blocks.data() + ids[i] * row_bytes, row.data(), H).ok());
      for (int64_t j = 0; j < H; ++j) ASSERT_NEAR(got[i * H + j], row[j] * 3.0f, 1e-5f * (1 + std::fabs(row[j])))
          << dtype_name(t) << " id " << ids[i] << " col " << j;
    }
    (*be)->release(out);
    (*be)->free_weight(*w);
  }
}

TEST(CudaQuant, UnkeptTypeIsAClearError) {
  REQUIRE_GPU();
  auto be = try_make_cuda_backend(0);
  ASSERT_TRUE(be.ok());
  std::vector<uint8_t> bytes(256 / 256 * 84 * 4);
  TensorView t;
  t.name = "blk.0.attn_q.weight";
  t.dtype = DType::Q2_K;
  t.shape = {4, 256};
  t.data = bytes.data();
  t.nbytes = bytes.size();
  auto w = (*be)->upload_matrix(t);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.message().find("Q2_K"), std::string::npos) << w.message();
  EXPECT_NE(w.message().find("--backend cpu"), std::string::npos) << w.message();
}

// GGUF models on both backends: prefill (decoded-to-bf16 GEMMs) and greedy
// decode (quantized GEMVs, CUDA graphs). The CPU's kernels round activations
// to 8 bits (Q8_K, as llama.cpp), the GPU's do not: the two differ by that
// rounding, not by the weights. By default the real Gemma 3 270M Q4_K_M (Q4_K,
// Q5_0, Q6_K and Q8_0 tensors); GEMFORGE_QUANT_TEST_GGUFS (paths separated by
// ':') replaces the list where that file cannot travel (the device machine:
// bench/cuda_quant_run.sh passes random-weight Q4_K_M / Q8_0 files).
std::vector<std::string> test_ggufs() {
  const char* env = std::getenv("GEMFORGE_QUANT_TEST_GGUFS");
  if (!env || !*env) return {test::gemma3_270m_gguf()};
  std::vector<std::string> out;
  std::string s = env;
  for (size_t a = 0; a <= s.size();) {
    size_t b = s.find(':', a);
    if (b == std::string::npos) b = s.size();
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

TEST(CudaQuant, GgufModelsMatchTheCpuBackend) {
  REQUIRE_GPU();
  for (const std::string& path : test_ggufs()) {
    SCOPED_TRACE(path);
    auto model = load_model(path);
    ASSERT_TRUE(model.ok()) << model.message() << " (scripts/setup.sh installs the 270M)";
    auto cpu = make_cpu_backend();
    auto gpu = try_make_cuda_backend(0);
    ASSERT_TRUE(gpu.ok()) << gpu.message();
    auto dc = Decoder::create(*model, *cpu);
    auto dg = Decoder::create(*model, **gpu);
    ASSERT_TRUE(dc.ok()) << dc.message();
    ASSERT_TRUE(dg.ok()) << dg.message();
    const int64_t V = model->spec.vocab_size;
    std::vector<int32_t> prompt = {2};  // arbitrary ids of the vocabulary
    for (int i = 1; i < 20; ++i) prompt.push_back(static_cast<int32_t>((818 + i * 7919) % V));
    auto cc = (*dc)->new_cache(64);
    auto cg = (*dg)->new_cache(64);
    ASSERT_TRUE(cc.ok() && cg.ok());
    auto lc = (*dc)->forward(prompt, **cc, true);
    auto lg = (*dg)->forward(prompt, **cg, true);
    ASSERT_TRUE(lc.ok() && lg.ok());
    // GPU prefill (bf16 GEMMs) against the GPU one token at a time (quantized
    // GEMVs, int8 activations): the two GPU paths agree.
    std::vector<double> kl_cpu, kl_steps;
    std::string per_position;
    {
      auto cs = (*dg)->new_cache(64);
      ASSERT_TRUE(cs.ok());
      for (size_t r = 0; r < prompt.size(); ++r) {
        auto l1 = (*dg)->forward({prompt[r]}, **cs, r == 0);
        ASSERT_TRUE(l1.ok());
        kl_steps.push_back(test::kl_div(lg->data() + r * V, l1->data(), V));
        EXPECT_LT(kl_steps.back(), 2e-2) << "GPU prefill vs GPU stepwise, position " << r;
        kl_cpu.push_back(test::kl_div(lc->data() + r * V, lg->data() + r * V, V));
        per_position += " " + std::to_string(kl_cpu.back());
      }
    }
    std::printf("[ %s ] prefill KL GPU vs CPU by position:%s\n", path.c_str(), per_position.c_str());
    // Typical positions within 1e-3. On the random-weight tiny Q4_K_M file one
    // position (7) is ill-conditioned: it moves with how activations are
    // rounded (CPU int8 vs GPU bf16 prefill: KL 0.037; GPU int8 stepwise vs
    // GPU bf16 prefill: 0.0017), so the bound at any one position is looser.
    std::nth_element(kl_steps.begin(), kl_steps.begin() + kl_steps.size() / 2, kl_steps.end());
    EXPECT_LT(kl_steps[kl_steps.size() / 2], 1e-3);
    const double max_kl = *std::max_element(kl_cpu.begin(), kl_cpu.end());
    std::nth_element(kl_cpu.begin(), kl_cpu.begin() + kl_cpu.size() / 2, kl_cpu.end());
    EXPECT_LT(kl_cpu[kl_cpu.size() / 2], 1e-3);
    int same = 0;
    double decode_kl = 0;
    for (int i = 0; i < 12; ++i) {
      const float* c = lc->data() + lc->size() - V;
      const float* g = lg->data() + lg->size() - V;
      decode_kl = std::max(decode_kl, test::kl_div(c, g, V));
      const int32_t next = argmax(c, V);
      same += next == argmax(g, V);
      lc = (*dc)->forward({next}, **cc, false);  // both continue the CPU's text
      lg = (*dg)->forward({next}, **cg, false);
      ASSERT_TRUE(lc.ok() && lg.ok());
    }
    std::printf("[ %s ] GPU vs CPU: prefill max KL %.3g, decode max KL %.3g, greedy token equal in %d / 12 steps, graph replays %lld\n",
                path.c_str(), max_kl, decode_kl, same, static_cast<long long>(cuda_step_stats(**gpu).graph_replays));
    EXPECT_LT(decode_kl, 2e-2);
    EXPECT_GE(same, 11);
    EXPECT_GT(cuda_step_stats(**gpu).graph_replays, 0);
  }
}

}  // namespace
}  // namespace gf
