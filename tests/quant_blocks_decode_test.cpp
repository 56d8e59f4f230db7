// The CUDA backend's block decoders (backend/cuda/quant_blocks.h: decode4 and
// decode_sub32, the code every GPU kernel that reads GGUF blocks runs) against the CPU's oracle,
// formats/dequant.h (itself checked against llama.cpp's gguf-py in
// quant_kernels_test): random blocks of every type the GPU keeps, and the
// real 270M file's tensors. Runs without a GPU (the header is plain C++).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/cuda/quant_blocks.h"
#include "core/half.h"
#include "formats/dequant.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace gf {
namespace {

using cuda::QType;

struct Case {
  DType dtype;
  QType qtype;
  std::vector<int> half_offsets;  // the float16 fields of a block (d, dmin)
};

const Case kCases[] = {
    {DType::Q4_0, QType::Q4_0, {0}}, {DType::Q5_0, QType::Q5_0, {0}}, {DType::Q8_0, QType::Q8_0, {0}},
    {DType::Q4_K, QType::Q4_K, {0, 2}}, {DType::Q5_K, QType::Q5_K, {0, 2}}, {DType::Q6_K, QType::Q6_K, {208}},
};

// A row through decode4 (sub32 false) or through decode_sub32's integer
// values and affine terms (w = a * v - b, a and b of the value's half).
template <QType T>
void decode_row_as(const uint8_t* row, int64_t K, float* out, bool sub32) {
  if (!sub32) {
    for (int64_t e = 0; e < K; e += 4) cuda::decode4<T>(row, e, out + e);
    return;
  }
  for (int64_t sb = 0; sb < K / 32; ++sb) {
    cuda::Sub32 s;
    cuda::decode_sub32<T>(row, sb, s);
    for (int i = 0; i < 32; ++i) {
      const int v = static_cast<int8_t>(static_cast<uint32_t>(s.v[i / 4]) >> (8 * (i % 4)) & 0xFF);
      out[sb * 32 + i] = i < 16 ? s.a0 * static_cast<float>(v) - s.b0 : s.a1 * static_cast<float>(v) - s.b1;
    }
  }
}

void decode_row(QType t, const uint8_t* row, int64_t K, float* out, bool sub32) {
  switch (t) {
    case QType::Q4_0: return decode_row_as<QType::Q4_0>(row, K, out, sub32);
    case QType::Q5_0: return decode_row_as<QType::Q5_0>(row, K, out, sub32);
    case QType::Q8_0: return decode_row_as<QType::Q8_0>(row, K, out, sub32);
    case QType::Q4_K: return decode_row_as<QType::Q4_K>(row, K, out, sub32);
    case QType::Q5_K: return decode_row_as<QType::Q5_K>(row, K, out, sub32);
    case QType::Q6_K: return decode_row_as<QType::Q6_K>(row, K, out, sub32);
    case QType::BF16: FAIL();
  }
}

// Equal up to one rounding (the host compiler may contract d * q - m into an fma).
void expect_same(const std::vector<float>& want, const std::vector<float>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size());
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (std::fabs(want[i] - got[i]) > 1e-6f * std::fabs(want[i]) + 1e-6f && ++bad < 5)
      ADD_FAILURE() << what << " element " << i << ": oracle " << want[i] << ", decoded " << got[i];
  EXPECT_EQ(bad, 0) << what;
}

TEST(QuantBlocksDecode, RandomBlocksOfEveryTypeEqualTheOracle) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.f, 2.f);
  const int64_t K = 1024, rows = 5;
  for (const Case& c : kCases) {
    const int be = dtype_info(c.dtype).block_elems, bb = dtype_info(c.dtype).block_bytes;
    const int64_t row_bytes = cuda::qtype_row_bytes(c.qtype, K);
    ASSERT_EQ(row_bytes, K / be * bb) << dtype_name(c.dtype);
    ASSERT_EQ(cuda::qtype_block_elems(c.qtype), be);
    std::vector<uint8_t> data(static_cast<size_t>(rows * row_bytes));
    for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
    for (int64_t blk = 0; blk < rows * K / be; ++blk)
      for (int off : c.half_offsets) {  // finite scales (random bytes could be NaN/inf)
        const uint16_t h = f32_to_f16(scale(rng));
        std::memcpy(&data[static_cast<size_t>(blk * bb + off)], &h, 2);
      }
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> want(K), got(K);
      const uint8_t* row = data.data() + r * row_bytes;
      ASSERT_TRUE(dequantize_row(c.dtype, row, want.data(), K).ok());
      for (bool sub32 : {false, true}) {
        decode_row(c.qtype, row, K, got.data(), sub32);
        expect_same(want, got, std::string(dtype_name(c.dtype)) + (sub32 ? " decode_sub32" : " decode4") + " row " + std::to_string(r));
      }
    }
  }
}

TEST(QuantBlocksDecode, RealGemma3_270mTensorsEqualTheOracle) {
  auto g = GgufFile::open(test::gemma3_270m_gguf());
  ASSERT_TRUE(g.ok()) << g.message() << " (scripts/setup.sh installs the model)";
  int checked = 0;
  for (const TensorView& t : g->tensors()) {
    QType q;
    if (!is_quantized(t.dtype) || !cuda::qtype_of(t.dtype, &q)) continue;
    const int64_t K = t.cols();
    for (int64_t r : {int64_t(0), t.rows() / 2, t.rows() - 1}) {
      const uint8_t* row = t.data + r * cuda::qtype_row_bytes(q, K);
      std::vector<float> want(K), got(K);
      ASSERT_TRUE(dequantize_row(t.dtype, row, want.data(), K).ok());
      for (bool sub32 : {false, true}) {
        decode_row(q, row, K, got.data(), sub32);
        expect_same(want, got, t.name + (sub32 ? " decode_sub32" : " decode4"));
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 100);  // the Q4_K_M file: Q4_K, Q5_0, Q6_K and Q8_0 tensors
}

TEST(QuantBlocksDecode, DeviceFormatsOfHostTypes) {
  QType q;
  EXPECT_TRUE(cuda::qtype_of(DType::F16, &q) && q == QType::BF16);
  EXPECT_TRUE(cuda::qtype_of(DType::Q6_K, &q) && q == QType::Q6_K);
  EXPECT_FALSE(cuda::qtype_of(DType::Q2_K, &q));  // not kept on the GPU: a clear error at upload
  EXPECT_FALSE(cuda::qtype_of(DType::Q4_1, &q));
}

}  // namespace
}  // namespace gf
