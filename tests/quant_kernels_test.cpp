// CPU kernels against ground truth:
//  - dequantize_row vs llama.cpp's gguf-py (numpy) dequantizers, on random
//    blocks (every bit pattern), gguf-py-quantized floats and real 270M rows;
//  - the fused matmul vs matmul_reference (dequantize, dot in double) for every
//    weight type, odd row counts and T in {1, 3, 17, 64};
//  - the same on real tensors of the Gemma 3 270M GGUF.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "formats/dequant.h"
#include "backend/cpu/kquants.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/quant_acts.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"
#include "cpu_isa_param.h"

namespace gf {
namespace {

class QuantKernels : public test::CpuIsaTest {};

std::string model_path() { return test::gemma3_270m_gguf(); }

TEST(QuantFormats, DequantizeMatchesGgufPy) {
  const std::string out = test::temp_path("ground_truth.gguf");
  std::string cmd = "python3 " GEMFORGE_SOURCE_DIR "/tests/quant_ground_truth.py '" + out + "'";
  // The first rows of one real tensor per quantized type, in a small file
  // (gguf-py is slow to parse the real file's 262k-token vocabulary).
  if (file_exists(model_path())) {
    auto model = GgufFile::open(model_path());
    ASSERT_TRUE(model.ok()) << model.message();
    GgufWriter w;
    std::set<DType> types;
    for (const TensorView& t : model->tensors()) {
      if (!is_quantized(t.dtype) || !types.insert(t.dtype).second) continue;
      const int64_t rows = std::min<int64_t>(4, t.rows());
      ASSERT_TRUE(w.add_tensor("real." + t.name, t.dtype, {rows, t.cols()}, t.data, static_cast<size_t>(rows) * t.row_bytes()).ok());
    }
    const std::string in = test::temp_path("real_rows.gguf");
    ASSERT_TRUE(w.write(in).ok());
    cmd += " '" + in + "'";
  }
  int rc = -1;
  const std::string log = test::run_command(cmd + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << "the ground-truth script needs python3 with numpy and llama.cpp's gguf package "
                      "(pip install numpy gguf; scripts/setup.sh installs them):\n"
                   << log;
  auto g = GgufFile::open(out);
  ASSERT_TRUE(g.ok()) << g.message();
  std::set<DType> checked;
  int n_real = 0;
  for (const TensorView& q : g->tensors()) {
    if (q.name.size() < 2 || q.name.substr(q.name.size() - 2) != ".q") continue;
    const std::string base = q.name.substr(0, q.name.size() - 2);
    const TensorView* ref = g->find_tensor(base + ".ref");
    ASSERT_NE(ref, nullptr) << base;
    ASSERT_EQ(ref->shape, q.shape) << base;
    std::vector<float> row(static_cast<size_t>(q.cols()));
    for (int64_t r = 0; r < q.rows(); ++r) {
      ASSERT_TRUE(dequantize_row(q.dtype, q.row(r), row.data(), q.cols()).ok()) << base;
      const float* want = reinterpret_cast<const float*>(ref->row(r));
      for (int64_t i = 0; i < q.cols(); ++i) {
        // gguf-py computes in float32 too, in a possibly different order.
        const float w = want[i], got = row[static_cast<size_t>(i)];
        ASSERT_LE(std::fabs(got - w), 1e-6f * std::fabs(w) + 1e-30f)
            << base << " row " << r << " elem " << i << ": " << got << " vs " << w;
      }
    }
    checked.insert(q.dtype);
    n_real += base.rfind("real.", 0) == 0;
  }
  EXPECT_EQ(checked, (std::set<DType>{DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                       DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}));
  if (file_exists(model_path())) {
    EXPECT_EQ(n_real, 4);  // Q8_0, Q5_0, Q4_K, Q6_K
  }
}

// Random blocks of any type: random bytes with finite, modest scale fields.
std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const auto& info = dtype_info(t);
  const int64_t nblocks = rows * cols / info.block_elems;
  std::vector<uint8_t> w(static_cast<size_t>(nblocks * info.block_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> nd(0, 1);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  auto put16 = [&](uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); };
  std::vector<int> f16_fields;
  switch (t) {
    case DType::F32:
      for (int64_t i = 0; i < rows * cols; ++i) {
        float v = nd(rng);
        std::memcpy(w.data() + 4 * i, &v, 4);
      }
      return w;
    case DType::F16: case DType::BF16:
      for (int64_t i = 0; i < rows * cols; ++i) put16(w.data() + 2 * i, t == DType::F16 ? f32_to_f16(nd(rng)) : f32_to_bf16(nd(rng)));
      return w;
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::Q4_K: case DType::Q5_K: f16_fields = {0, 2}; break;
    case DType::Q4_1: case DType::Q5_1: f16_fields = {0, 2}; break;
    case DType::Q2_K: f16_fields = {80, 82}; break;
    case DType::Q3_K: f16_fields = {108}; break;
    case DType::Q6_K: f16_fields = {208}; break;
    case DType::Q8_K: break;
    default: ADD_FAILURE() << "no generator for " << dtype_name(t);
  }
  for (int64_t b = 0; b < nblocks; ++b) {
    uint8_t* blk = w.data() + b * info.block_bytes;
    if (t == DType::Q8_K) {
      float d = 0.01f * nd(rng);
      std::memcpy(blk, &d, 4);
      continue;
    }
    for (int off : f16_fields) {
      // Q4_0/Q5_0/Q8_0 have one fp16 field; writing offset 2 there only
      // overwrites quant bytes with other random bits.
      put16(blk + off, f32_to_f16(0.01f * nd(rng)));
    }
  }
  return w;
}

// Max over outputs of |fused - reference| / (|w_row| * |x_t|): the scale of
// the int8 activation rounding error.
double max_rel_error(const TensorView& w, const float* x, int64_t T) {
  const int64_t out = w.rows(), in = w.cols();
  std::vector<float> y(static_cast<size_t>(T * out)), ref(y.size()), row(static_cast<size_t>(in));
  cpu::matmul(w, x, T, y.data());
  cpu::matmul_reference(w, x, T, ref.data());
  double worst = 0;
  for (int64_t r = 0; r < out; ++r) {
    EXPECT_TRUE(dequantize_row(w.dtype, w.row(r), row.data(), in).ok());
    double wn = 0;
    for (float v : row) wn += static_cast<double>(v) * v;
    for (int64_t t = 0; t < T; ++t) {
      double xn = 0;
      for (int64_t i = 0; i < in; ++i) xn += static_cast<double>(x[t * in + i]) * x[t * in + i];
      const double scale = std::sqrt(wn * xn) + 1e-30;
      const size_t k = static_cast<size_t>(t * out + r);
      if (!std::isfinite(y[k])) return INFINITY;
      worst = std::max(worst, std::abs(static_cast<double>(y[k]) - ref[k]) / scale);
    }
  }
  return worst;
}

TEST_P(QuantKernels, MatmulMatchesReferenceForEveryType) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                  DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    ASSERT_TRUE(cpu::matmul_supported(t)) << dtype_name(t);
    const bool k = dtype_info(t).block_elems == 256;
    const bool flt = dtype_info(t).block_elems == 1;
    for (int64_t in : k ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{32, 96, 640}) {
      for (int64_t out : {1, 7, 37}) {
        std::vector<uint8_t> bytes = random_weights(t, out, in, rng);
        TensorView w{"w", t, {out, in}, bytes.data(), bytes.size()};
        for (int64_t T : {1, 3, 17, 64}) {
          std::vector<float> x(static_cast<size_t>(T * in));
          for (auto& v : x) v = nd(rng);
          x[0] = 40.0f;  // an outlier, as real activations have
          const double err = max_rel_error(w, x.data(), T);
          // Float types: float32 accumulation; BF16 on AVX512-BF16 builds also
          // splits each activation into two bf16 (|x - hi - lo| <= 2^-18 |x|,
          // so at most 2^-18 ||w|| ||x|| more: 5e-6); quantized: int8 activations
          // (rounding error ~ 1/127 of each block's max, averaging out).
          const double tol = !flt ? 1e-2 : t == DType::BF16 ? 5e-6 : 1e-6;
          EXPECT_LT(err, tol) << dtype_name(t) << " out=" << out << " in=" << in << " T=" << T;
        }
      }
    }
  }
}

// Float weights must match a float32 computation to ~1e-5 relative (the
// float32 reference decoder's oracle uses them).
TEST_P(QuantKernels, FloatWeightsAreExactish) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const int64_t out = 37, in = 1152;
    std::vector<uint8_t> bytes = random_weights(dt, out, in, rng);
    TensorView w{"w", dt, {out, in}, bytes.data(), bytes.size()};
    for (int64_t T : {1, 5, 64}) {
      std::vector<float> x(static_cast<size_t>(T * in)), y(static_cast<size_t>(T * out)), ref(y.size());
      for (auto& v : x) v = nd(rng);
      cpu::matmul(w, x.data(), T, y.data());
      cpu::matmul_reference(w, x.data(), T, ref.data());
      for (size_t i = 0; i < y.size(); ++i) {
        EXPECT_NEAR(y[i], ref[i], 1e-5 * std::sqrt(static_cast<double>(in)) + 1e-5 * std::fabs(ref[i]));
      }
    }
  }
}

// A token's product must not depend on how many tokens share the call
// (batched serving equals single-sequence decoding): prefill tiles (T >= 4)
// give bit for bit the decode (T = 1) result.
void expect_same_bits_for_any_token_count(DType dt, int64_t in, std::initializer_list<int64_t> token_counts, std::mt19937& rng) {
  std::normal_distribution<float> nd(0, 1);
  const int64_t out = 37;  // odd: row tiles end with a tail
  std::vector<uint8_t> bytes = random_weights(dt, out, in, rng);
  TensorView w{"w", dt, {out, in}, bytes.data(), bytes.size()};
  for (int64_t T : token_counts) {
    std::vector<float> x(static_cast<size_t>(T * in)), y(static_cast<size_t>(T * out)), one(static_cast<size_t>(out));
    for (auto& v : x) v = nd(rng);
    cpu::matmul(w, x.data(), T, y.data());
    for (int64_t t = 0; t < T; ++t) {
      cpu::matmul(w, x.data() + t * in, 1, one.data());
      for (int64_t r = 0; r < out; ++r)
        ASSERT_EQ(y[static_cast<size_t>(t * out + r)], one[static_cast<size_t>(r)]) << dtype_name(dt) << " T " << T << " token " << t << " row " << r;
    }
  }
}

// Float weights: token counts that are not multiples of the tile, and a K with a 16-float tail.
TEST_P(QuantKernels, FloatWeightsGiveTheSameBitsForAnyTokenCount) {
  std::mt19937 rng(9);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) expect_same_bits_for_any_token_count(dt, 648, {4, 11, 40}, rng);
}

// Block-quantized weights (AVX2 and AVX-512 prefill tiles vs the decode dot):
// odd token counts (token pairs with a tail), K-quants past the fused-decode token count.
TEST_P(QuantKernels, BlockQuantWeightsGiveTheSameBitsForAnyTokenCount) {
  std::mt19937 rng(19);
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    expect_same_bits_for_any_token_count(dt, dtype_info(dt).block_elems == 256 ? 512 : 640, {4, 5, 11, 40, 45}, rng);
}

TEST_P(QuantKernels, RealGgufTensorsMatchReference) {
  if (!file_exists(model_path())) GTEST_SKIP() << model_path() << " is absent: scripts/setup.sh installs it";
  auto g = GgufFile::open(model_path());
  ASSERT_TRUE(g.ok()) << g.message();
  std::set<DType> seen;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight",
                           "token_embd.weight"}) {
    const TensorView* t = g->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    seen.insert(t->dtype);
    TensorView part = *t;
    part.shape = {std::min<int64_t>(t->rows(), 67), t->cols()};
    part.nbytes = static_cast<size_t>(part.shape[0]) * t->row_bytes();
    for (int64_t T : {1, 4, 17}) {
      std::vector<float> x(static_cast<size_t>(T * t->cols()));
      for (auto& v : x) v = nd(rng);
      EXPECT_LT(max_rel_error(part, x.data(), T), 1e-2) << name << " T=" << T;
    }
  }
  EXPECT_EQ(seen, (std::set<DType>{DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}));
}

// A token's result must not depend on how many tokens share the call (decode
// vs prefill vs batched serving): the fused K-quant decode kernels and the
// unpacked prefill kernel give identical bits.
TEST_P(QuantKernels, KQuantFusedDecodeEqualsUnpackedBitForBit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const int64_t in = 1024, nsb = in / 256, rows = 9;
    std::vector<uint8_t> bytes = random_weights(t, rows, in, rng);
    std::vector<float> x(static_cast<size_t>(5 * in));
    for (auto& v : x) v = nd(rng);
    cpu::Q8KActs a;
    cpu::quantize_q8k(x.data(), 5, in, a);
    std::vector<cpu::KBlock> kb(static_cast<size_t>(nsb));
    const size_t rb = bytes.size() / rows;
    for (int64_t r = 0; r < rows; ++r) {
      cpu::kquant_unpack_row(t, bytes.data() + r * rb, nsb, kb.data());
      float four[4];
      cpu::kquant_dot4(kb.data(), nsb, a, 1, four);
      for (int64_t tok = 0; tok < 5; ++tok) {
        float fused = 0, one = 0;
        const bool has_fused = cpu::kquant_dot_fused(t, bytes.data() + r * rb, nsb, a, tok, &fused);
        cpu::kquant_dot1(kb.data(), nsb, a, tok, &one);
        if (GetParam() != cpu::Isa::kBaseline) {
          ASSERT_TRUE(has_fused) << dtype_name(t);
          EXPECT_EQ(fused, one) << dtype_name(t) << " row " << r << " token " << tok;
        } else {
          // The baseline variant has no fused kernel: it says so, and matmul unpacks rows instead.
          EXPECT_FALSE(has_fused) << dtype_name(t);
        }
        if (tok >= 1) {
          EXPECT_EQ(four[tok - 1], one) << dtype_name(t) << " row " << r << " token " << tok;
        }
      }
    }
  }
}

// The CPU backend keeps Q5_0 weights as a Q8_0 copy (quant_acts.h): same
// values, and the same products bit for bit, in decode (T = 1) and prefill.
TEST_P(QuantKernels, Q5_0AsQ8_0CopyIsBitIdentical) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  const int64_t rows = 37, in = 640;
  std::vector<uint8_t> q5 = random_weights(DType::Q5_0, rows, in, rng);
  TensorView w5{"w", DType::Q5_0, {rows, in}, q5.data(), q5.size()};
  std::vector<uint8_t> q8(cpu::q8_0_bytes(w5));
  cpu::repack_to_q8_0(w5, q8.data());
  TensorView w8{"w", DType::Q8_0, {rows, in}, q8.data(), q8.size()};
  std::vector<float> d5(static_cast<size_t>(in)), d8(d5.size());
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(dequantize_row(DType::Q5_0, w5.row(r), d5.data(), in).ok());
    ASSERT_TRUE(dequantize_row(DType::Q8_0, w8.row(r), d8.data(), in).ok());
    ASSERT_EQ(d5, d8) << "row " << r;
  }
  for (int64_t T : {1, 6}) {
    std::vector<float> x(static_cast<size_t>(T * in)), y5(static_cast<size_t>(T * rows)), y8(y5.size());
    for (auto& v : x) v = nd(rng);
    cpu::matmul(w5, x.data(), T, y5.data());
    cpu::matmul(w8, x.data(), T, y8.data());
    EXPECT_EQ(y5, y8) << "T=" << T;
  }
}

TEST(QuantFormats, Fp16RoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1e-5f, 3.0e-7f})
    EXPECT_NEAR(f16_to_f32(f32_to_f16(v)), v, std::abs(v) * 1e-3 + 1e-7) << v;
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
}

GF_INSTANTIATE_CPU_ISA(QuantKernels);

}  // namespace
}  // namespace gf
